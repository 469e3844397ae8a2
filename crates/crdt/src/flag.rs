//! Flag: a boolean that can only be switched on.

use crate::CrdtError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flag {
    enabled: bool,
}

impl Flag {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn value(&self) -> bool {
        self.enabled
    }

    /// Switches the flag on; the delta is an enabled flag.
    pub fn enable(&mut self) -> Flag {
        self.enabled = true;
        Flag { enabled: true }
    }

    /// Sets the flag to `value`: enabling always works, disabling is refused once enabled.
    pub fn set(&mut self, value: bool) -> Result<Flag, CrdtError> {
        match (value, self.enabled) {
            (true, _) => Ok(self.enable()),
            (false, false) => Ok(Flag::new()),
            (false, true) => Err(CrdtError::FlagDisable),
        }
    }

    pub fn merge(&mut self, other: &Flag) {
        self.enabled |= other.enabled;
    }

    pub fn merge_delta(&mut self, delta: &Flag) {
        self.merge(delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enables_and_refuses_to_disable() {
        let mut f = Flag::new();
        assert_eq!(f.set(false).unwrap(), Flag::new());
        f.set(true).unwrap();
        assert!(f.value());
        assert_eq!(f.set(false).unwrap_err().to_string(), "a flag cannot be disabled once enabled");
    }
}
