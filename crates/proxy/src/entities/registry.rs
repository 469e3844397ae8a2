//! [`Registry`]: the active entities of one entity type, each a task fed through a channel.
//!
//! Architecture invariant: a command handed to [`Registry::send`] reaches exactly one live entity
//! task. Sends and passivation both happen under the registry's lock, so an entity task only
//! leaves the map when its channel is empty, and a send never goes to a task that has left.
//!
//! Every active entity holds one channel, so the channel is futures' unbounded one: about 100
//! bytes while empty, one small node per queued command. A tokio channel keeps a 384-byte,
//! 128-byte-aligned state and a block of 32 slots (~0.7 KiB per entity, measured at 1,000
//! active carts). Commands travel boxed, so that a node stays small whatever the command.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};

/// What an entity task receives its commands from.
pub type Inbox<C> = UnboundedReceiver<Box<C>>;

/// Each active entity's command sender, by key (`service`, `entity id`).
type Senders<C> = HashMap<(String, String), UnboundedSender<Box<C>>>;

/// Active entities by key (`service`, `entity id`).
#[derive(Debug)]
pub struct Registry<C> {
    entities: Mutex<Senders<C>>,
}

impl<C> Default for Registry<C> {
    fn default() -> Self {
        Self { entities: Mutex::new(HashMap::new()) }
    }
}

impl<C> Registry<C> {
    /// Sends `command` to the entity's task, starting one with `spawn` if none is active.
    pub fn send(&self, key: (String, String), command: C, spawn: impl FnOnce(Inbox<C>)) {
        let command = Box::new(command);
        let mut entities = self.entities.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let command = match entities.get(&key) {
            Some(sender) => match sender.unbounded_send(command) {
                Ok(()) => return,
                // The task ended (failed or stopped): start a new one.
                Err(error) => error.into_inner(),
            },
            None => command,
        };
        let (sender, receiver) = unbounded();
        // The receiver is alive: this send cannot fail.
        let _ = sender.unbounded_send(command);
        entities.insert(key, sender);
        spawn(receiver);
    }

    /// Removes the entity unless a command is waiting, which is returned instead.
    pub fn passivate(&self, key: &(String, String), receiver: &mut Inbox<C>) -> Option<Box<C>> {
        let mut entities = self.entities.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match receiver.try_recv() {
            Ok(command) => Some(command),
            Err(_) => {
                entities.remove(key);
                None
            }
        }
    }

    /// How many entities are active.
    pub fn len(&self) -> usize {
        self.entities.lock().map_or(0, |e| e.len())
    }

    /// Whether none is active.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_task_per_key_and_passivation_hands_back_waiting_commands() {
        let registry = Registry::<u32>::default();
        let key = ("svc".to_string(), "1".to_string());
        let mut spawned = Vec::new();
        registry.send(key.clone(), 1, |rx| spawned.push(rx));
        registry.send(key.clone(), 2, |rx| spawned.push(rx));
        assert_eq!(spawned.len(), 1);
        let mut rx = spawned.pop().expect("spawned");
        assert_eq!(rx.try_recv().ok(), Some(Box::new(1)));
        assert_eq!(registry.passivate(&key, &mut rx), Some(Box::new(2)));
        assert_eq!(registry.passivate(&key, &mut rx), None);
        assert!(registry.is_empty());
        drop(rx);
        let mut again = Vec::new();
        registry.send(key, 3, |rx| again.push(rx));
        assert_eq!(again.len(), 1);
    }
}
