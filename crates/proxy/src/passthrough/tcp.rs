//! Opaque TCP: bytes copied both ways until either side closes.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Copies between the client and the user port; returns the bytes moved each way.
pub async fn splice(
    mut client: impl AsyncRead + AsyncWrite + Unpin,
    mut upstream: TcpStream,
) -> std::io::Result<(u64, u64)> {
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await
}
