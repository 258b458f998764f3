//! Content digests (`sha256:<hex>`, `sha512:<hex>`): strict parsing, streaming hashing and
//! comparison. A digest string from an archive becomes a file name (`blobs/sha256/<hex>`), so the
//! grammar check here is also what keeps blob paths inside the layout.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated digest: a supported algorithm and lowercase hex of the right length.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    pub algorithm: Algorithm,
    pub hex: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("malformed digest {0:?} (expected sha256:<64 lowercase hex> or sha512:<128>)")]
    Malformed(String),
    #[error("unsupported digest algorithm in {0:?} (gpurun verifies sha256 and sha512)")]
    Unsupported(String),
}

impl Digest {
    pub fn parse(text: &str) -> Result<Digest, DigestError> {
        let (alg, hex) = text.split_once(':').ok_or_else(|| DigestError::Malformed(text.to_owned()))?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ if is_grammatical(alg, hex) => return Err(DigestError::Unsupported(text.to_owned())),
            _ => return Err(DigestError::Malformed(text.to_owned())),
        };
        let lower_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        if hex.len() != algorithm.hex_len() || !hex.chars().all(lower_hex) {
            return Err(DigestError::Malformed(text.to_owned()));
        }
        Ok(Digest { algorithm, hex: hex.to_owned() })
    }

    /// The digest of `data` with `algorithm`.
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Digest {
        let mut h = Hasher::new(algorithm);
        h.update(data);
        h.finish()
    }
}

/// OCI descriptor grammar: `algorithm ":" encoded`, components `[a-z0-9]+` joined by `+._-`.
fn is_grammatical(alg: &str, encoded: &str) -> bool {
    let alg_ok = !alg.is_empty()
        && alg
            .split(['+', '.', '_', '-'])
            .all(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit()));
    let enc_ok =
        !encoded.is_empty() && encoded.chars().all(|c| c.is_ascii_alphanumeric() || "=_-".contains(c));
    alg_ok && enc_ok
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

/// Incremental hasher for either algorithm. ring's assembly runs about twice as fast as
/// portable Rust on CPUs without SHA extensions, and hashing is a third of an unpack's CPU.
pub struct Hasher {
    algorithm: Algorithm,
    ctx: ring::digest::Context,
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        let alg = match algorithm {
            Algorithm::Sha256 => &ring::digest::SHA256,
            Algorithm::Sha512 => &ring::digest::SHA512,
        };
        Hasher { algorithm, ctx: ring::digest::Context::new(alg) }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
    }

    pub fn finish(self) -> Digest {
        Digest { algorithm: self.algorithm, hex: to_hex(self.ctx.finish().as_ref()) }
    }
}

/// SHA-256 of a short key (a cache file name's path and selection), in plain Rust. ring's first
/// use probes the CPU with `cpuid`, which traps to the hypervisor on a virtual machine (some 40
/// µs of every warm start on the 2-core VM of `bench/start.sh`); a key of a few hundred bytes
/// needs no vector unit. The same function as ring's (tested against it), so names in existing
/// caches stay valid. Not for image data: that goes through [`Hasher`].
pub fn small_sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut state = SHA256_INIT;
    let mut block = [0u8; 64];
    let mut filled = 0;
    let mut total: u64 = 0;
    for byte in parts.iter().flat_map(|p| p.iter().copied()) {
        block[filled] = byte;
        filled += 1;
        total += 1;
        if filled == 64 {
            sha256_block(&mut state, &block);
            filled = 0;
        }
    }
    // Padding: 0x80, zeros, then the length in bits, big-endian, ending a block.
    block[filled] = 0x80;
    block[filled + 1..].fill(0);
    if filled >= 56 {
        sha256_block(&mut state, &block);
        block = [0u8; 64];
    }
    block[56..].copy_from_slice(&(total * 8).to_be_bytes());
    sha256_block(&mut state, &block);
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

const SHA256_INIT: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

const SHA256_K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// One 64-byte block of FIPS 180-4's SHA-256 compression.
fn sha256_block(state: &mut [u32; 8], block: &[u8; 64]) {
    let mut w = [0u32; 64];
    for (i, chunk) in block.chunks_exact(4).enumerate() {
        w[i] = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    for i in 16..64 {
        let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
        let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    for i in 0..64 {
        let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
        let ch = (e & f) ^ (!e & g);
        let t1 = h.wrapping_add(s1).wrapping_add(ch).wrapping_add(SHA256_K[i]).wrapping_add(w[i]);
        let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
        let maj = (a & b) ^ (a & c) ^ (b & c);
        let t2 = s0.wrapping_add(maj);
        h = g;
        g = f;
        f = e;
        e = d.wrapping_add(t1);
        d = c;
        c = b;
        b = a;
        a = t1.wrapping_add(t2);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *s = s.wrapping_add(v);
    }
}

pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert_eq!(Digest::parse(&good).unwrap().to_string(), good);
        assert!(Digest::parse(&format!("sha512:{}", "0".repeat(128))).is_ok());
        for bad in [
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            "sha256:../../x".to_owned(),
            "sha256".to_owned(),
            String::new(),
        ] {
            assert!(matches!(Digest::parse(&bad), Err(DigestError::Malformed(_))), "{bad}");
        }
        assert!(matches!(Digest::parse("md5:abcd"), Err(DigestError::Unsupported(_))));
        assert!(matches!(Digest::parse("blake3:abcd"), Err(DigestError::Unsupported(_))));
    }

    #[test]
    fn small_sha256_is_sha256() {
        // Every length around the padding's block boundaries, split into parts several ways.
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..data.len() {
            let whole = Digest::of(Algorithm::Sha256, &data[..len]).hex;
            let cut = len / 3;
            assert_eq!(to_hex(&small_sha256(&[&data[..len]])), whole, "length {len}");
            assert_eq!(to_hex(&small_sha256(&[&data[..cut], &[], &data[cut..len]])), whole, "parts {len}");
        }
        assert_eq!(
            to_hex(&small_sha256(&[b"abc"])),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn empty_layer_digest() {
        // The well-known empty layer: 1024 zero bytes (OCI config.md example).
        let d = Digest::of(Algorithm::Sha256, &[0u8; 1024]);
        assert!(d.hex.starts_with("5f70bf18"));
    }
}
