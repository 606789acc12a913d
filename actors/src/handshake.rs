//! The peer handshake of SPEC §4: who is calling, and proof that both ends
//! know the herd secret, before a single record is exchanged.
//!
//! ```text
//! dialer D                                  acceptor A (D's neighbour)
//!   HELLO <D> <A> <nonce-D>          ->
//!                                    <-     CHALLENGE <nonce-A> <mac-A>
//!   PROOF <mac-D>                    ->
//!                                    <-     WELCOME
//!   ... sealed frames both ways (seal.rs): the sync, then floods ...
//! mac-A = HMAC-SHA256(secret, "herd/1 accept A D nonce-D nonce-A")
//! mac-D = HMAC-SHA256(secret, "herd/1 dial D A nonce-A nonce-D")
//! ```
//!
//! Each side proves itself over a nonce the *other* side just chose, so a
//! recorded handshake is worthless later. The two MACs use different labels,
//! so one cannot be reflected as the other. A refusal is a line `? <reason>`
//! and a close. Once the handshake passes, both ends seal the connection
//! with keys derived from the secret and both nonces ([`crate::seal`]), so
//! every later byte is encrypted and authenticated. Without a secret (an
//! operator's explicit choice), MACs are `-`, names alone are checked and
//! the link stays plain, which the server warns about at start.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::codec::Frame;
use crate::protocol::fields;
use crate::seal::{End, LinkKeys, PeerCodec};

/// The herd secret, or none (names only); optionally a second secret that
/// this server also accepts from the neighbours it dials, for changing the
/// secret without downtime (docs/security.md, "Changing the secret").
#[derive(Clone, Default)]
pub struct Secret(Option<Arc<[u8]>>, Option<Arc<[u8]>>);

impl std::fmt::Debug for Secret {
    /// Never shows the secret itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match (&self.0, &self.1) {
            (None, _) => "Secret(none)",
            (Some(_), None) => "Secret(set)",
            (Some(_), Some(_)) => "Secret(set, and one more accepted)",
        })
    }
}

impl Secret {
    pub fn new(bytes: &[u8]) -> Secret {
        Secret(Some(bytes.into()), None)
    }

    pub fn none() -> Secret {
        Secret(None, None)
    }

    /// Also accepts `extra` from acceptors this server dials. An acceptor
    /// always proves itself with its own (first) secret, and the dialer
    /// answers with whichever of its two that proof used; so servers that
    /// hold the old secret and servers that hold the new one (each also
    /// accepting the other) keep every link up while they change over.
    pub fn also_accepting(self, extra: &[u8]) -> Secret {
        Secret(self.0, Some(extra.into()))
    }

    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// Which of this server's secrets made the acceptor's `claimed` MAC:
    /// the secret to prove itself and seal the link with.
    fn matching(&self, message: &str, claimed: &[u8]) -> Option<Secret> {
        [&self.0, &self.1]
            .into_iter()
            .flatten()
            .map(|key| Secret(Some(key.clone()), None))
            .find(|single| single.verify(message, claimed))
            .or_else(|| self.0.is_none().then(Secret::none))
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

    /// The keys that seal a connection whose handshake used these nonces
    /// (hex, checked by [`nonce_bytes`]); none without a secret.
    fn link_keys(
        &self,
        dialer: &str,
        acceptor: &str,
        nonce_d: &str,
        nonce_a: &str,
    ) -> Option<LinkKeys> {
        let key = self.0.as_ref()?;
        let (nonce_d, nonce_a) = (from_hex(nonce_d.as_bytes())?, from_hex(nonce_a.as_bytes())?);
        Some(LinkKeys::derive(key, dialer, acceptor, &nonce_d, &nonce_a))
    }
}

/// Seals `framed` as `end` when the secret is set (keys from both nonces).
fn seal(framed: &mut PeerFramed, keys: Option<LinkKeys>, end: End) -> std::io::Result<()> {
    if let Some(keys) = keys {
        framed.codec_mut().seal(&keys, end)?;
    }
    Ok(())
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

/// Bytes of a handshake nonce (written as twice as many hex digits).
const NONCE_BYTES: usize = 16;

fn nonce() -> String {
    to_hex(&rand::random::<[u8; NONCE_BYTES]>())
}

/// Whether `text` is a nonce as the protocol writes them: the other side's
/// nonce salts the link's keys, so it must be the full 16 bytes.
fn is_nonce(text: &str) -> bool {
    from_hex(text.as_bytes()).is_some_and(|bytes| bytes.len() == NONCE_BYTES)
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
    #[error("HELLO addressed to {0}, not to this server")]
    WrongTarget(String),
    #[error("malformed nonce {0:?}")]
    BadNonce(String),
    #[error("wrong herd secret")]
    BadSecret,
}

/// A framed peer connection: plain lines in the handshake, sealed after it.
pub type PeerFramed = Framed<TcpStream, PeerCodec>;

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
        if !is_nonce(&nonce_a) {
            return Err(HandshakeError::BadNonce(nonce_a));
        }
        let Some(secret) = secret.matching(
            &accept_message(them, me, &nonce_d, &nonce_a),
            mac_a.as_bytes(),
        ) else {
            return Err(HandshakeError::BadSecret);
        };
        let mac_d = secret.mac(&dial_message(me, them, &nonce_a, &nonce_d));
        send_line(framed, format!("PROOF {mac_d}")).await?;
        expect::<0>(&read_line(framed).await?, b"WELCOME")?;
        // What follows WELCOME is sealed, even if it came in the same read.
        seal(
            framed,
            secret.link_keys(me, them, &nonce_d, &nonce_a),
            End::Dialer,
        )?;
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
        if target != me {
            let _ = send_line(framed, format!("? this is {me}, not {target}")).await;
            return Err(HandshakeError::WrongTarget(target));
        }
        if !is_neighbour(&dialer) {
            let _ = send_line(framed, format!("? {dialer} is not a neighbour of {me}")).await;
            return Err(HandshakeError::NotNeighbour(dialer));
        }
        if !is_nonce(&nonce_d) {
            let _ = send_line(framed, "? malformed nonce".into()).await;
            return Err(HandshakeError::BadNonce(nonce_d));
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
        seal(
            framed,
            secret.link_keys(&dialer, me, &nonce_d, &nonce_a),
            End::Acceptor,
        )?;
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

    /// Runs both sides of a handshake over loopback; returns the dialer's
    /// result, the acceptor's and both connections.
    async fn handshake_pair(
        dialer_secret: Secret,
        acceptor_secret: Secret,
        target: &str,
    ) -> (
        Result<(), HandshakeError>,
        Result<Arc<str>, HandshakeError>,
        PeerFramed,
        PeerFramed,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let framed = |stream| Framed::new(stream, PeerCodec::new(1 << 20, metrics.clone()));
        let (dialed, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
        let (mut d, mut a) = (framed(dialed.unwrap()), framed(accepted.unwrap().0));
        let timeout = Duration::from_secs(5);
        let (dialer, acceptor) = tokio::join!(
            dial(&mut d, "Riley", target, &dialer_secret, timeout),
            accept(
                &mut a,
                "Jaquez",
                |n| n == "Riley",
                &acceptor_secret,
                timeout
            ),
        );
        (dialer, acceptor, d, a)
    }

    #[tokio::test]
    async fn with_a_secret_both_ends_seal_and_understand_each_other() {
        let secret = Secret::new(b"herd secret");
        let (dialer, acceptor, mut d, mut a) =
            handshake_pair(secret.clone(), secret, "Jaquez").await;
        dialer.unwrap();
        assert_eq!(&*acceptor.unwrap(), "Riley");
        assert!(d.codec().is_sealed() && a.codec().is_sealed());
        send_line(&mut a, "SUMS 0 0".into()).await.unwrap();
        assert_eq!(read_line(&mut d).await.unwrap(), "SUMS 0 0");
        send_line(&mut d, "SYNCED 0".into()).await.unwrap();
        assert_eq!(read_line(&mut a).await.unwrap(), "SYNCED 0");
    }

    /// Every step of changing the secret from `old` to `new` (docs/security.md):
    /// servers one step apart keep their links, both ways; two steps apart,
    /// or with no secret in common, they do not.
    #[tokio::test]
    async fn links_stay_up_through_every_step_of_changing_the_secret() {
        fn old() -> Secret {
            Secret::new(b"old secret")
        }
        fn new() -> Secret {
            Secret::new(b"new secret")
        }
        fn step1() -> Secret {
            old().also_accepting(b"new secret")
        }
        fn step2() -> Secret {
            new().also_accepting(b"old secret")
        }
        type Step = fn() -> Secret;
        let neighbours: [(&str, Step, Step); 4] = [
            ("before and step 1", old, step1),
            ("step 1 and step 2", step1, step2),
            ("step 2 and after", step2, new),
            ("step 1 and step 1", step1, step1),
        ];
        for (what, a, b) in neighbours {
            for (dialer, acceptor) in [(a(), b()), (b(), a())] {
                let (dialed, accepted, mut d, mut a) =
                    handshake_pair(dialer, acceptor, "Jaquez").await;
                assert!(
                    dialed.is_ok() && accepted.is_ok(),
                    "{what}: {dialed:?} {accepted:?}"
                );
                send_line(&mut d, "SYNCED 0".into()).await.unwrap();
                assert_eq!(read_line(&mut a).await.unwrap(), "SYNCED 0", "{what}");
            }
        }
        let (dialed, _, _, _) = handshake_pair(old(), new(), "Jaquez").await;
        assert!(
            matches!(dialed, Err(HandshakeError::BadSecret)),
            "{dialed:?}"
        );
        let (_, accepted, _, _) = handshake_pair(new(), step1(), "Jaquez").await;
        assert!(
            accepted.is_err(),
            "before and after share no secret: {accepted:?}"
        );
    }

    #[tokio::test]
    async fn without_a_secret_the_link_stays_plain() {
        let (dialer, acceptor, d, a) =
            handshake_pair(Secret::none(), Secret::none(), "Jaquez").await;
        dialer.unwrap();
        acceptor.unwrap();
        assert!(!d.codec().is_sealed() && !a.codec().is_sealed());
    }

    #[tokio::test]
    async fn a_hello_for_another_server_is_refused_for_that_reason() {
        let secret = Secret::new(b"herd secret");
        let (dialer, acceptor, _, _) = handshake_pair(secret.clone(), secret, "Juzang").await;
        assert!(
            matches!(&dialer, Err(HandshakeError::Refused(r)) if r == "this is Jaquez, not Juzang"),
            "{dialer:?}"
        );
        assert!(matches!(acceptor, Err(HandshakeError::WrongTarget(t)) if t == "Juzang"));
    }

    #[test]
    fn nonces_must_be_sixteen_bytes_of_hex() {
        assert!(is_nonce(&nonce()));
        for bad in [
            "",
            "abc",
            "00",
            &"0".repeat(30),
            &"0".repeat(34),
            &"g".repeat(32),
        ] {
            assert!(!is_nonce(bad), "{bad}");
        }
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
