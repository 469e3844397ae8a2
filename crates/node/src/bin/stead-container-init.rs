//! The container init helper: `stead-container-init --spec <json>` enters the pod sandbox and execs
//! the container's command. See `stead_node::init`.

fn main() -> std::process::ExitCode {
    stead_node::init::main_with_args(&stead_node::syscall::LinuxSyscall, std::env::args().skip(1))
}
