//! The sealed peer wire as docs/peer-protocol.md describes it, written again
//! for the tests with the crates' own APIs (not the server's code), so that
//! a server bug and a test bug cannot cancel out: keys from HKDF-SHA256 over
//! the secret and both handshake nonces, frames `u32 length || ChaCha20-
//! Poly1305(plaintext) || tag` with the frame counter as nonce.

#![allow(dead_code)]

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use hkdf::Hkdf;
use sha2::Sha256;

/// One direction of a link: its key and the next frame counter.
pub struct Direction {
    cipher: ChaCha20Poly1305,
    counter: u64,
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex nonce"))
        .collect()
}

/// The (dialer to acceptor, acceptor to dialer) directions of a connection
/// whose handshake carried the hex nonces `nonce_d` and `nonce_a`.
pub fn directions(
    secret: &str,
    dialer: &str,
    acceptor: &str,
    nonce_d: &str,
    nonce_a: &str,
) -> (Direction, Direction) {
    let salt = [unhex(nonce_d), unhex(nonce_a)].concat();
    let hkdf = Hkdf::<Sha256>::new(Some(&salt), secret.as_bytes());
    let direction = |info: String| {
        let mut key = [0u8; 32];
        hkdf.expand(info.as_bytes(), &mut key).unwrap();
        Direction {
            cipher: ChaCha20Poly1305::new(&key.into()),
            counter: 0,
        }
    };
    (
        direction(format!("herd/1 seal dial {dialer} {acceptor}")),
        direction(format!("herd/1 seal accept {acceptor} {dialer}")),
    )
}

impl Direction {
    fn nonce(&mut self) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter += 1;
        nonce
    }

    /// One frame holding `plain`.
    pub fn seal(&mut self, plain: &[u8]) -> Vec<u8> {
        let length = ((plain.len() + 16) as u32).to_be_bytes();
        let nonce = self.nonce();
        let sealed = self
            .cipher
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plain,
                    aad: &length,
                },
            )
            .unwrap();
        [&length[..], &sealed].concat()
    }

    /// The plaintext of one whole frame (length prefix included), or `None`
    /// when it does not authenticate as this direction's next frame.
    pub fn open(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        let nonce = self.nonce();
        self.cipher
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: &frame[4..],
                    aad: &frame[..4],
                },
            )
            .ok()
    }
}

/// Splits sealed bytes into whole frames (each with its length prefix);
/// the second value is what is left of an incomplete last frame.
pub fn frames(mut bytes: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let length = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        if bytes.len() < 4 + length {
            break;
        }
        let (frame, rest) = bytes.split_at(4 + length);
        out.push(frame);
        bytes = rest;
    }
    (out, bytes)
}
