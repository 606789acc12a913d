//! The peer handshake of SPEC §4: who is calling, and proof that both ends
//! know the herd secret, before a single record is exchanged.
//!
//! ```text
//! dialer D                                  acceptor A (D's neighbour)
//!   HELLO <D> <A> <nonce-D>          ->
//!                                    <-     CHALLENGE <nonce-A> <mac-A>
//!   PROOF <mac-D>                    ->
//!                                    <-     WELCOME
//!                                    <-     DIGEST <hex>   (see peer.rs)
//! mac-A = HMAC-SHA256(secret, "herd/1 accept A D nonce-D nonce-A")
//! mac-D = HMAC-SHA256(secret, "herd/1 dial D A nonce-A nonce-D")
//! ```
//!
//! Each side proves itself over a nonce the *other* side just chose, so a
//! recorded handshake is worthless later. The two MACs use different labels,
//! so one cannot be reflected as the other. A refusal is a line `? <reason>`
//! and a close. Without a secret, MACs are `-` and names alone are checked,
//! which the server warns about at start.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::codec::{Frame, LineCodec};
use crate::protocol::fields;

/// The herd secret, or none (names only).
#[derive(Clone, Default)]
pub struct Secret(Option<Arc<[u8]>>);

impl std::fmt::Debug for Secret {
    /// Never shows the secret itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Secret(set)"
        } else {
            "Secret(none)"
        })
    }
}

impl Secret {
    pub fn new(bytes: &[u8]) -> Secret {
        Secret(Some(bytes.into()))
    }

    pub fn none() -> Secret {
        Secret(None)
    }

    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// The MAC of `message`, as hex, or `-` without a secret.
    fn mac(&self, message: &str) -> String {
        let Some(key) = &self.0 else {
            return "-".into();
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            return "-".into(); // HMAC takes keys of any length; not reached
        };
        mac.update(message.as_bytes());
        to_hex(&mac.finalize().into_bytes())
    }

    /// Checks a MAC in constant time. Without a secret every MAC passes.
    fn verify(&self, message: &str, claimed: &[u8]) -> bool {
        let Some(key) = &self.0 else {
            return true;
        };
        let Some(claimed) = from_hex(claimed) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            return false;
        };
        mac.update(message.as_bytes());
        mac.verify_slice(&claimed).is_ok()
    }
}

fn accept_message(acceptor: &str, dialer: &str, nonce_d: &str, nonce_a: &str) -> String {
    format!("herd/1 accept {acceptor} {dialer} {nonce_d} {nonce_a}")
}

fn dial_message(dialer: &str, acceptor: &str, nonce_a: &str, nonce_d: &str) -> String {
    format!("herd/1 dial {dialer} {acceptor} {nonce_a} {nonce_d}")
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses the hex of a MAC (public for the fuzz targets).
pub fn from_hex(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    // Hex digits only: from_str_radix alone would also take a sign ("+f").
    if !text.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    text.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

fn nonce() -> String {
    to_hex(&rand::random::<[u8; 16]>())
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("connection closed during handshake")]
    Closed,
    #[error("unexpected line {0:?}")]
    Unexpected(String),
    #[error("refused by peer: {0}")]
    Refused(String),
    #[error("{0} is not a neighbour of this server")]
    NotNeighbour(String),
    #[error("wrong herd secret")]
    BadSecret,
}

/// A framed peer connection.
pub type PeerFramed = Framed<TcpStream, LineCodec>;

/// Longest line while the handshake runs. Its lines are short (names are at
/// most 64 bytes), and a stranger who has proved nothing yet must not make
/// the server buffer up to the peer port's full line limit.
pub const HANDSHAKE_MAX_LINE: usize = 1024;

async fn read_line(framed: &mut PeerFramed) -> Result<Bytes, HandshakeError> {
    match framed.next().await {
        Some(Ok(Frame::Line(line))) => Ok(line),
        Some(Ok(Frame::Overlong)) => Err(HandshakeError::Unexpected("overlong line".into())),
        Some(Err(e)) => Err(e.into()),
        None => Err(HandshakeError::Closed),
    }
}

async fn send_line(framed: &mut PeerFramed, line: String) -> Result<(), HandshakeError> {
    framed.send(Bytes::from(line + "\n")).await?;
    Ok(())
}

/// Splits a line into exactly `N` fields after `verb`, or refuses it.
/// Public for the fuzz targets: it reads what strangers send.
pub fn expect<const N: usize>(line: &[u8], verb: &[u8]) -> Result<[String; N], HandshakeError> {
    let text = || String::from_utf8_lossy(line).into_owned();
    if line.starts_with(b"? ") {
        return Err(HandshakeError::Refused(text()[2..].to_string()));
    }
    let mut parts = fields(line);
    if parts.next() != Some(verb) {
        return Err(HandshakeError::Unexpected(text()));
    }
    let words: Vec<String> = parts
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    words
        .try_into()
        .map_err(|_| HandshakeError::Unexpected(text()))
}

/// The dialer's side: returns once the acceptor said WELCOME.
pub async fn dial(
    framed: &mut PeerFramed,
    me: &str,
    them: &str,
    secret: &Secret,
    timeout: Duration,
) -> Result<(), HandshakeError> {
    let full = framed.codec().max_line();
    framed
        .codec_mut()
        .set_max_line(full.min(HANDSHAKE_MAX_LINE));
    let exchange = async {
        let nonce_d = nonce();
        send_line(framed, format!("HELLO {me} {them} {nonce_d}")).await?;
        let [nonce_a, mac_a] = expect::<2>(&read_line(framed).await?, b"CHALLENGE")?;
        if !secret.verify(
            &accept_message(them, me, &nonce_d, &nonce_a),
            mac_a.as_bytes(),
        ) {
            return Err(HandshakeError::BadSecret);
        }
        let mac_d = secret.mac(&dial_message(me, them, &nonce_a, &nonce_d));
        send_line(framed, format!("PROOF {mac_d}")).await?;
        expect::<0>(&read_line(framed).await?, b"WELCOME")?;
        Ok(())
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| HandshakeError::Timeout)??;
    framed.codec_mut().set_max_line(full);
    Ok(())
}

/// The acceptor's side: returns the dialer's name once it has proved itself.
/// `is_neighbour` says which names may connect. On failure the dialer is told
/// why (without detail on secrets) before the caller drops the connection.
pub async fn accept(
    framed: &mut PeerFramed,
    me: &str,
    is_neighbour: impl Fn(&str) -> bool,
    secret: &Secret,
    timeout: Duration,
) -> Result<Arc<str>, HandshakeError> {
    let full = framed.codec().max_line();
    framed
        .codec_mut()
        .set_max_line(full.min(HANDSHAKE_MAX_LINE));
    let exchange = async {
        let [dialer, target, nonce_d] = expect::<3>(&read_line(framed).await?, b"HELLO")?;
        if target != me || !is_neighbour(&dialer) {
            let _ = send_line(framed, format!("? {dialer} is not a neighbour of {me}")).await;
            return Err(HandshakeError::NotNeighbour(dialer));
        }
        let nonce_a = nonce();
        let mac_a = secret.mac(&accept_message(me, &dialer, &nonce_d, &nonce_a));
        send_line(framed, format!("CHALLENGE {nonce_a} {mac_a}")).await?;
        let [mac_d] = expect::<1>(&read_line(framed).await?, b"PROOF")?;
        if !secret.verify(
            &dial_message(&dialer, me, &nonce_a, &nonce_d),
            mac_d.as_bytes(),
        ) {
            let _ = send_line(framed, "? authentication failed".into()).await;
            return Err(HandshakeError::BadSecret);
        }
        send_line(framed, "WELCOME".into()).await?;
        Ok(Arc::from(dialer.as_str()))
    };
    let dialer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| HandshakeError::Timeout)??;
    // Authenticated: from here on, sync and flood lines of full length.
    framed.codec_mut().set_max_line(full);
    Ok(dialer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_verify_only_with_the_same_secret_and_message() {
        let secret = Secret::new(b"herd secret");
        let msg = dial_message("Riley", "Jaquez", "aa", "bb");
        let mac = secret.mac(&msg);
        assert!(secret.verify(&msg, mac.as_bytes()));
        assert!(!Secret::new(b"other").verify(&msg, mac.as_bytes()));
        assert!(!secret.verify(&dial_message("Riley", "Jaquez", "aa", "bc"), mac.as_bytes()));
        // The accept MAC over the same nonces is not a valid dial MAC.
        let reflected = secret.mac(&accept_message("Riley", "Jaquez", "aa", "bb"));
        assert!(!secret.verify(&msg, reflected.as_bytes()));
        assert!(!secret.verify(&msg, b"-"));
        assert!(!secret.verify(&msg, b"zz"));
    }

    #[test]
    fn without_a_secret_macs_are_dashes_and_pass() {
        let none = Secret::none();
        assert_eq!(none.mac("anything"), "-");
        assert!(none.verify("anything", b"-"));
    }

    /// Found by the `peer_line` fuzz target: `+f` was read as the byte 0x0f.
    #[test]
    fn mac_hex_takes_hex_digits_only() {
        assert_eq!(from_hex(b"00ffA0"), Some(vec![0x00, 0xff, 0xa0]));
        for bad in [&b"+f"[..], b"-f", b" f", b"0x", b"f", b"\xc3\xa9"] {
            assert_eq!(from_hex(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn debug_never_prints_the_secret() {
        assert_eq!(format!("{:?}", Secret::new(b"hunter2")), "Secret(set)");
    }

    #[test]
    fn expect_splits_and_recognises_refusals() {
        assert_eq!(
            expect::<1>(b"PROOF abc", b"PROOF").unwrap(),
            ["abc".to_string()]
        );
        assert!(matches!(
            expect::<1>(b"PROOF", b"PROOF"),
            Err(HandshakeError::Unexpected(_))
        ));
        assert!(
            matches!(expect::<0>(b"? no", b"WELCOME"), Err(HandshakeError::Refused(r)) if r == "no")
        );
    }
}
