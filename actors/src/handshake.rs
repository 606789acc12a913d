//! The peer handshake of SPEC §4: who is calling, which protocol version and
//! topology each side has, and proof that both ends know the herd secret,
//! before a single record is exchanged. The lines are [`PeerLine`]s.
//!
//! ```text
//! dialer D                                           acceptor A (D's neighbour)
//!   HELLO <D> <A> <nonce-D> <versions> <topo-D> <purpose>  ->
//!                                      <-  CHALLENGE <version> <nonce-A> <topo-A>
//!   PROOF <mac-D>                                          ->
//!                                      <-  WELCOME <mac-A>
//!   ... sealed frames both ways (seal.rs): the sync, then floods ...
//! transcript = D A nonce-D nonce-A version topo-D topo-A purpose
//! mac-D = HMAC-SHA256(secret, "herd/2 dial " + transcript)
//! mac-A = HMAC-SHA256(secret, "herd/2 accept " + transcript)
//! ```
//!
//! The acceptor proves last: a stranger who sends `HELLO` gets a nonce and
//! nothing computed from the secret, so it has nothing to test a guessed
//! secret against offline; it must prove first, and a wrong proof ends the
//! connection. Each side proves itself over a nonce the *other* side chose,
//! so a recorded handshake is worthless later, and the two MACs carry
//! different labels, so one cannot be reflected as the other. Both MACs
//! cover the versions and topologies, so nobody on the path can make two
//! servers believe they agree (or differ) when they do not.
//!
//! `<versions>` is the range the dialer speaks ([`VERSIONS`]); the acceptor
//! picks the highest common one or refuses, naming both ranges. A version-1
//! server (three-field `HELLO`, acceptor proving first) shares no version
//! with this one: its links are refused with that reason
//! (docs/operations.md, "Upgrading a running herd").
//!
//! A refusal is a line `? <reason>` and a close. Once the handshake passes,
//! both ends seal the connection with keys derived from the secret and both
//! nonces ([`crate::seal`]). Without a secret (an operator's explicit
//! choice), MACs are `-`, names alone are checked and the link stays plain,
//! which the server warns about at start.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::codec::Frame;
use crate::metrics::Metrics;
use crate::peer_line::{
    Hello, HexBytes, MacBytes, Nonce, PeerLine, Purpose, TopologyDigest, Versions,
    HANDSHAKE_MAX_LINE, PEER_MAX_LINE, VERSIONS,
};
use crate::seal::{End, LinkKeys, PeerCodec};
use crate::text::LogText;

/// The herd secret, or none (names only); optionally a second secret that
/// this server also accepts, for changing the secret without downtime
/// (docs/security.md, "Changing the secret").
#[derive(Clone, Default)]
pub struct Secret {
    /// What this server proves itself with; none: names only.
    primary: Option<Arc<[u8]>>,
    /// Also accepted from neighbours while the secret changes.
    extra: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for Secret {
    /// Never shows the secret itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match (&self.primary, &self.extra) {
            (None, _) => "Secret(none)",
            (Some(_), None) => "Secret(set)",
            (Some(_), Some(_)) => "Secret(set, and one more accepted)",
        })
    }
}

impl Secret {
    pub fn new(bytes: &[u8]) -> Secret {
        Secret {
            primary: Some(bytes.into()),
            extra: None,
        }
    }

    pub fn none() -> Secret {
        Secret::default()
    }

    /// Also accepts `extra` from dialers. A dialer always proves itself
    /// with its own (primary) secret, and the acceptor answers with
    /// whichever of its two that proof used; so servers that hold the old
    /// secret and servers that hold the new one (each also accepting the
    /// other) keep every link up while they change over.
    pub fn also_accepting(self, extra: &[u8]) -> Secret {
        Secret {
            extra: Some(extra.into()),
            ..self
        }
    }

    pub fn is_set(&self) -> bool {
        self.primary.is_some()
    }

    /// The secret of this server's two that made `claimed`: the one to
    /// answer with and seal the link with. Without a secret, names only.
    fn matching(&self, message: &str, claimed: Option<&MacBytes>) -> Option<Secret> {
        if self.primary.is_none() {
            return Some(Secret::none());
        }
        [&self.primary, &self.extra]
            .into_iter()
            .flatten()
            .map(|key| Secret::new(key))
            .find(|single| single.verify(message, claimed))
    }

    /// The MAC of `message`, or none without a secret.
    fn mac(&self, message: &str) -> Option<MacBytes> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.primary.as_ref()?).ok()?;
        mac.update(message.as_bytes());
        Some(HexBytes(mac.finalize().into_bytes().into()))
    }

    /// Checks a MAC in constant time. Without a secret every MAC passes.
    fn verify(&self, message: &str, claimed: Option<&MacBytes>) -> bool {
        let Some(key) = &self.primary else {
            return true;
        };
        let (Some(claimed), Ok(mut mac)) = (claimed, Hmac::<Sha256>::new_from_slice(key)) else {
            return false;
        };
        mac.update(message.as_bytes());
        mac.verify_slice(&claimed.0).is_ok()
    }

    /// The keys that seal a connection of this transcript; none without a
    /// secret.
    fn link_keys(&self, t: &Transcript) -> Option<LinkKeys> {
        let key = self.primary.as_ref()?;
        Some(LinkKeys::derive(
            key,
            &t.dialer,
            &t.acceptor,
            &t.nonce_d.0,
            &t.nonce_a.0,
        ))
    }
}

/// Everything both MACs cover.
struct Transcript {
    dialer: String,
    acceptor: String,
    nonce_d: Nonce,
    nonce_a: Nonce,
    version: u16,
    topology_d: TopologyDigest,
    topology_a: TopologyDigest,
    purpose: Purpose,
}

impl Transcript {
    fn message(&self, label: &str) -> String {
        format!(
            "herd/2 {label} {} {} {} {} {} {} {} {}",
            self.dialer,
            self.acceptor,
            self.nonce_d,
            self.nonce_a,
            self.version,
            self.topology_d,
            self.topology_a,
            self.purpose.word()
        )
    }
}

/// Seals `framed` as `end` when the secret is set.
fn seal(framed: &mut PeerFramed, keys: Option<LinkKeys>, end: End) -> std::io::Result<()> {
    if let Some(keys) = keys {
        framed.codec_mut().seal(&keys, end)?;
    }
    Ok(())
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
    #[error("unexpected line {0}")]
    Unexpected(String),
    #[error("refused by peer: {0}")]
    Refused(String),
    #[error("{name} is not a neighbour of this server")]
    NotNeighbour {
        name: String,
        /// The dialer's topology: when it differs from ours, the herd is
        /// mixed (its settings list a link ours do not).
        topology: Option<TopologyDigest>,
    },
    #[error("HELLO addressed to {0}, not to this server")]
    WrongTarget(String),
    #[error("no common peer protocol version: it speaks {theirs}, this server {ours}")]
    NoCommonVersion { theirs: Versions, ours: Versions },
    #[error("wrong herd secret")]
    BadSecret,
}

impl HandshakeError {
    /// The other side's `? <reason>`, escaped and clipped for the log.
    fn refused(reason: &[u8]) -> HandshakeError {
        HandshakeError::Refused(LogText::clipped(reason, 200).to_string())
    }

    fn unexpected(line: &[u8]) -> HandshakeError {
        HandshakeError::Unexpected(LogText::clipped(line, 80).to_string())
    }
}

/// A framed peer connection: plain lines in the handshake, sealed after it.
pub type PeerFramed = Framed<TcpStream, PeerCodec>;

/// A peer connection's framing, either end: lines up to [`PEER_MAX_LINE`],
/// every sealed frame that fails to open counted in `metrics`.
pub fn framed(stream: TcpStream, metrics: &Arc<Metrics>) -> PeerFramed {
    let metrics = metrics.clone();
    let codec = PeerCodec::new(PEER_MAX_LINE)
        .reporting(Arc::new(move || Metrics::bump(&metrics.peer_seal_failures)));
    Framed::new(stream, codec)
}

/// What a passed handshake established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Met {
    /// The other server's name.
    pub neighbour: Arc<str>,
    pub version: u16,
    /// The other server's topology digest.
    pub topology: TopologyDigest,
    pub purpose: Purpose,
}

/// Who this server is on the peer wire.
#[derive(Debug, Clone)]
pub struct Identity {
    pub me: Arc<str>,
    /// The digest of the topology this server was given.
    pub topology: TopologyDigest,
    pub secret: Secret,
    pub timeout: Duration,
}

async fn read_line(framed: &mut PeerFramed) -> Result<Bytes, HandshakeError> {
    match framed.next().await {
        Some(Ok(Frame::Line(line))) => Ok(line),
        Some(Ok(Frame::Overlong)) => Err(HandshakeError::Unexpected("overlong line".into())),
        Some(Err(e)) => Err(e.into()),
        None => Err(HandshakeError::Closed),
    }
}

async fn send(framed: &mut PeerFramed, line: PeerLine<'_>) -> Result<(), HandshakeError> {
    framed.send(Bytes::from(line.to_bytes())).await?;
    Ok(())
}

/// Tells the other side why, then fails with `error`.
async fn refuse<T>(
    framed: &mut PeerFramed,
    reason: String,
    error: HandshakeError,
) -> Result<T, HandshakeError> {
    let _ = send(framed, PeerLine::Refused(reason.as_bytes())).await;
    Err(error)
}

/// Lowers the line limit for the handshake; returns the full one.
fn limit_lines(framed: &mut PeerFramed) -> usize {
    let full = framed.codec().max_line();
    framed
        .codec_mut()
        .set_max_line(full.min(HANDSHAKE_MAX_LINE));
    full
}

/// The dialer's side: returns once the acceptor has proved itself.
pub async fn dial(
    framed: &mut PeerFramed,
    me: &Identity,
    them: &str,
    purpose: Purpose,
) -> Result<Met, HandshakeError> {
    let full = limit_lines(framed);
    let met = tokio::time::timeout(me.timeout, dial_exchange(framed, me, them, purpose))
        .await
        .map_err(|_| HandshakeError::Timeout)??;
    framed.codec_mut().set_max_line(full);
    Ok(met)
}

async fn dial_exchange(
    framed: &mut PeerFramed,
    me: &Identity,
    them: &str,
    purpose: Purpose,
) -> Result<Met, HandshakeError> {
    let nonce_d = Nonce::random();
    let hello = Hello {
        dialer: &me.me,
        acceptor: them,
        nonce: nonce_d,
        versions: VERSIONS,
        topology: Some(me.topology),
        purpose,
    };
    send(framed, PeerLine::Hello(hello)).await?;
    let line = read_line(framed).await?;
    let (version, nonce_a, topology_a) = match PeerLine::parse(&line) {
        Ok(PeerLine::Challenge {
            version,
            nonce,
            topology,
        }) if (VERSIONS.lo..=VERSIONS.hi).contains(&version) => (version, nonce, topology),
        Ok(PeerLine::Refused(reason)) => return Err(HandshakeError::refused(reason)),
        _ => return Err(HandshakeError::unexpected(&line)),
    };
    let transcript = Transcript {
        dialer: me.me.to_string(),
        acceptor: them.to_owned(),
        nonce_d,
        nonce_a,
        version,
        topology_d: me.topology,
        topology_a,
        purpose,
    };
    let mac_d = me.secret.mac(&transcript.message("dial"));
    send(framed, PeerLine::Proof(mac_d)).await?;
    let line = read_line(framed).await?;
    match PeerLine::parse(&line) {
        Ok(PeerLine::Welcome(mac_a)) => {
            if !me
                .secret
                .verify(&transcript.message("accept"), mac_a.as_ref())
            {
                return Err(HandshakeError::BadSecret);
            }
        }
        Ok(PeerLine::Refused(reason)) => return Err(HandshakeError::refused(reason)),
        _ => return Err(HandshakeError::unexpected(&line)),
    }
    // What follows WELCOME is sealed, even if it came in the same read.
    seal(framed, me.secret.link_keys(&transcript), End::Dialer)?;
    Ok(Met {
        neighbour: them.into(),
        version,
        topology: topology_a,
        purpose,
    })
}

/// The acceptor's side: returns what it learnt once the dialer has proved
/// itself. `is_neighbour` says which names may connect. On failure the
/// dialer is told why (without detail on secrets) before the caller drops
/// the connection.
pub async fn accept(
    framed: &mut PeerFramed,
    me: &Identity,
    is_neighbour: impl Fn(&str) -> bool,
) -> Result<Met, HandshakeError> {
    let full = limit_lines(framed);
    let met = tokio::time::timeout(me.timeout, accept_exchange(framed, me, is_neighbour))
        .await
        .map_err(|_| HandshakeError::Timeout)??;
    // Authenticated: from here on, sync and flood lines of full length.
    framed.codec_mut().set_max_line(full);
    Ok(met)
}

async fn accept_exchange(
    framed: &mut PeerFramed,
    me: &Identity,
    is_neighbour: impl Fn(&str) -> bool,
) -> Result<Met, HandshakeError> {
    let line = read_line(framed).await?;
    let Ok(PeerLine::Hello(hello)) = PeerLine::parse(&line) else {
        // Not a peer at all: closed without a word.
        return Err(HandshakeError::unexpected(&line));
    };
    let dialer = hello.dialer.to_owned();
    if hello.acceptor != &*me.me {
        let reason = format!("this is {}, not {}", me.me, hello.acceptor);
        let error = HandshakeError::WrongTarget(hello.acceptor.to_owned());
        return refuse(framed, reason, error).await;
    }
    let (Some(version), Some(topology_d)) = (VERSIONS.common(hello.versions), hello.topology)
    else {
        let error = HandshakeError::NoCommonVersion {
            theirs: hello.versions,
            ours: VERSIONS,
        };
        let reason = format!(
            "no common peer protocol version: {} speaks {VERSIONS}",
            me.me
        );
        return refuse(framed, reason, error).await;
    };
    if !is_neighbour(&dialer) {
        let reason = format!("{dialer} is not a neighbour of {}", me.me);
        let error = HandshakeError::NotNeighbour {
            name: dialer,
            topology: hello.topology,
        };
        return refuse(framed, reason, error).await;
    }
    let transcript = Transcript {
        dialer: dialer.clone(),
        acceptor: me.me.to_string(),
        nonce_d: hello.nonce,
        nonce_a: Nonce::random(),
        version,
        topology_d,
        topology_a: me.topology,
        purpose: hello.purpose,
    };
    let challenge = PeerLine::Challenge {
        version,
        nonce: transcript.nonce_a,
        topology: me.topology,
    };
    send(framed, challenge).await?;
    let line = read_line(framed).await?;
    let Ok(PeerLine::Proof(mac_d)) = PeerLine::parse(&line) else {
        return Err(HandshakeError::unexpected(&line));
    };
    let Some(secret) = me
        .secret
        .matching(&transcript.message("dial"), mac_d.as_ref())
    else {
        return refuse(
            framed,
            "authentication failed".into(),
            HandshakeError::BadSecret,
        )
        .await;
    };
    let mac_a = secret.mac(&transcript.message("accept"));
    send(framed, PeerLine::Welcome(mac_a)).await?;
    seal(framed, secret.link_keys(&transcript), End::Acceptor)?;
    Ok(Met {
        neighbour: dialer.as_str().into(),
        version,
        topology: topology_d,
        purpose: transcript.purpose,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript() -> Transcript {
        Transcript {
            dialer: "Riley".into(),
            acceptor: "Jaquez".into(),
            nonce_d: Nonce::random(),
            nonce_a: Nonce::random(),
            version: 2,
            topology_d: HexBytes([1; 8]),
            topology_a: HexBytes([2; 8]),
            purpose: Purpose::Link,
        }
    }

    #[test]
    fn macs_verify_only_with_the_same_secret_and_transcript() {
        let secret = Secret::new(b"herd secret 16 bytes");
        let t = transcript();
        let mac = secret.mac(&t.message("dial"));
        assert!(secret.verify(&t.message("dial"), mac.as_ref()));
        assert!(!Secret::new(b"other").verify(&t.message("dial"), mac.as_ref()));
        let other_topology = Transcript {
            topology_a: HexBytes([3; 8]),
            ..transcript()
        };
        let other_mac = secret.mac(&other_topology.message("dial"));
        assert!(!secret.verify(&t.message("dial"), other_mac.as_ref()));
        // The accept MAC over the same transcript is not a valid dial MAC.
        let reflected = secret.mac(&t.message("accept"));
        assert!(!secret.verify(&t.message("dial"), reflected.as_ref()));
        assert!(!secret.verify(&t.message("dial"), None));
    }

    #[test]
    fn without_a_secret_macs_are_dashes_and_pass() {
        let none = Secret::none();
        assert_eq!(none.mac("anything"), None);
        assert!(none.verify("anything", None));
    }

    #[test]
    fn debug_never_prints_the_secret() {
        assert_eq!(format!("{:?}", Secret::new(b"hunter2")), "Secret(set)");
    }

    fn identity(name: &str, secret: Secret, topology: u8) -> Identity {
        Identity {
            me: name.into(),
            topology: HexBytes([topology; 8]),
            secret,
            timeout: Duration::from_secs(5),
        }
    }

    async fn pair() -> (PeerFramed, PeerFramed) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let framed = |stream| Framed::new(stream, PeerCodec::new(1 << 20));
        let (dialed, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
        (framed(dialed.unwrap()), framed(accepted.unwrap().0))
    }

    /// Runs both sides of a handshake over loopback; returns the dialer's
    /// result, the acceptor's and both connections.
    async fn handshake_pair(
        dialer_secret: Secret,
        acceptor_secret: Secret,
        target: &str,
    ) -> (
        Result<Met, HandshakeError>,
        Result<Met, HandshakeError>,
        PeerFramed,
        PeerFramed,
    ) {
        let (mut d, mut a) = pair().await;
        let (riley, jaquez) = (
            identity("Riley", dialer_secret, 1),
            identity("Jaquez", acceptor_secret, 2),
        );
        let (dialer, acceptor) = tokio::join!(
            dial(&mut d, &riley, target, Purpose::Link),
            accept(&mut a, &jaquez, |n| n == "Riley"),
        );
        (dialer, acceptor, d, a)
    }

    #[tokio::test]
    async fn with_a_secret_both_ends_seal_learn_each_others_topology_and_understand_each_other() {
        let secret = Secret::new(b"herd secret 16 bytes");
        let (dialer, acceptor, mut d, mut a) =
            handshake_pair(secret.clone(), secret, "Jaquez").await;
        let (dialer, acceptor) = (dialer.unwrap(), acceptor.unwrap());
        assert_eq!(&*acceptor.neighbour, "Riley");
        assert_eq!(acceptor.topology, HexBytes([1; 8]));
        assert_eq!(dialer.topology, HexBytes([2; 8]));
        assert_eq!((dialer.version, acceptor.version), (2, 2));
        assert!(d.codec().is_sealed() && a.codec().is_sealed());
        send(&mut a, PeerLine::Synced(0)).await.unwrap();
        assert_eq!(read_line(&mut d).await.unwrap(), "SYNCED 0");
    }

    /// What a stranger learns from sending HELLO: a nonce and a topology
    /// digest, nothing computed from the secret.
    #[tokio::test]
    async fn a_stranger_gets_nothing_to_test_a_guess_against() {
        let (mut d, mut a) = pair().await;
        let acceptor = identity("Jaquez", Secret::new(b"herd secret 16 bytes"), 2);
        let server = tokio::spawn(async move { accept(&mut a, &acceptor, |_| true).await });
        let hello = format!(
            "HELLO Riley Jaquez {} 2-2 {} link\n",
            Nonce::random(),
            HexBytes([1; 8])
        );
        d.send(Bytes::from(hello)).await.unwrap();
        let answer = read_line(&mut d).await.unwrap();
        let Ok(PeerLine::Challenge { .. }) = PeerLine::parse(&answer) else {
            panic!("{answer:?}");
        };
        assert_eq!(
            answer.split(|&b| b == b' ').count(),
            4,
            "no MAC in {answer:?}"
        );
        // A wrong proof ends it, with nothing more.
        let wrong = format!("PROOF {}\n", HexBytes([0; 32]));
        d.send(Bytes::from(wrong)).await.unwrap();
        let answer = read_line(&mut d).await.unwrap();
        assert_eq!(answer, "? authentication failed");
        assert!(matches!(
            server.await.unwrap(),
            Err(HandshakeError::BadSecret)
        ));
    }

    /// Every step of changing the secret from `old` to `new` (docs/security.md):
    /// servers one step apart keep their links, both ways; with no secret in
    /// common, they do not.
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
                send(&mut d, PeerLine::Synced(0)).await.unwrap();
                assert_eq!(read_line(&mut a).await.unwrap(), "SYNCED 0", "{what}");
            }
        }
        for (dialer, acceptor) in [(old(), new()), (new(), old())] {
            let (dialed, accepted, _, _) = handshake_pair(dialer, acceptor, "Jaquez").await;
            assert!(
                matches!(accepted, Err(HandshakeError::BadSecret)),
                "{accepted:?}"
            );
            assert!(dialed.is_err());
        }
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
        let secret = Secret::new(b"herd secret 16 bytes");
        let (dialer, acceptor, _, _) = handshake_pair(secret.clone(), secret, "Juzang").await;
        assert!(
            matches!(&dialer, Err(HandshakeError::Refused(r)) if r == "this is Jaquez, not Juzang"),
            "{dialer:?}"
        );
        assert!(matches!(acceptor, Err(HandshakeError::WrongTarget(t)) if t == "Juzang"));
    }

    #[tokio::test]
    async fn a_version_one_hello_is_refused_naming_both_ranges() {
        let (mut d, mut a) = pair().await;
        let acceptor = identity("Jaquez", Secret::new(b"herd secret 16 bytes"), 2);
        let server = tokio::spawn(async move { accept(&mut a, &acceptor, |_| true).await });
        let hello = format!("HELLO Riley Jaquez {}\n", Nonce::random());
        d.send(Bytes::from(hello)).await.unwrap();
        let answer = read_line(&mut d).await.unwrap();
        assert_eq!(
            answer,
            "? no common peer protocol version: Jaquez speaks 2-2"
        );
        let error = server.await.unwrap().unwrap_err();
        assert_eq!(
            error.to_string(),
            "no common peer protocol version: it speaks 1-1, this server 2-2"
        );
    }
}
