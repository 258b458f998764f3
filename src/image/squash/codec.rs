//! The compressors SquashFS images use, each decoding one block into a buffer of a known
//! maximum size: a hostile block can never make more output than the block size, whatever its
//! ratio. LZO has no maintained safe Rust decoder, so it has one here ([`lzo1x_decompress`]).

use flate2::{Decompress, FlushDecompress, Status};

/// A SquashFS compressor id (superblock `compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Gzip,
    Lzo,
    Xz,
    Lz4,
    Zstd,
}

impl Codec {
    /// The codec of a superblock's compressor id; `Err` names the unsupported one.
    pub fn from_id(id: u16) -> Result<Codec, String> {
        Ok(match id {
            1 => Codec::Gzip,
            2 => {
                return Err(
                    "legacy LZMA compression is not supported (re-create it with mksquashfs -comp xz)".into(),
                );
            }
            3 => Codec::Lzo,
            4 => Codec::Xz,
            5 => Codec::Lz4,
            6 => Codec::Zstd,
            n => return Err(format!("unknown compressor id {n}")),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Lzo => "lzo",
            Codec::Xz => "xz",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// Per-thread decoder state (zlib and zstd contexts are reused between blocks).
pub struct Decoder {
    codec: Codec,
    zlib: Option<Decompress>,
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl Decoder {
    pub fn new(codec: Codec) -> Decoder {
        Decoder { codec, zlib: None, zstd: None }
    }

    /// Decodes `input` into `out` (cleared first), which receives at most `max` bytes: more is
    /// an error, never an allocation. zstd and zlib write into `out`'s spare capacity, so a
    /// reused buffer costs no zeroing.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), String> {
        out.clear();
        match self.codec {
            Codec::Gzip => return self.zlib(input, out, max),
            Codec::Zstd => {
                out.reserve_exact(max);
                let d = match &mut self.zstd {
                    Some(d) => d,
                    None => self.zstd.insert(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?),
                };
                // At most `max` bytes of the spare capacity: the output's bound.
                let n = d
                    .decompress_to_buffer(input, &mut SpareCapacity { vec: out, max })
                    .map_err(|e| format!("zstd: {e}"))?;
                debug_assert_eq!(n, out.len());
                return Ok(());
            }
            _ => {}
        }
        out.resize(max, 0);
        let n = match self.codec {
            Codec::Lz4 => lz4_flex::block::decompress_into(input, out).map_err(|e| format!("lz4: {e}"))?,
            Codec::Xz => xz(input, out)?,
            Codec::Lzo => lzo1x_decompress(input, out)?,
            Codec::Gzip | Codec::Zstd => unreachable!("handled above"),
        };
        out.truncate(n);
        Ok(())
    }

    fn zlib(&mut self, input: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), String> {
        let z = self.zlib.get_or_insert_with(|| Decompress::new(true));
        z.reset(true);
        out.reserve_exact(max);
        // decompress_vec writes into the spare capacity, which may exceed `max`: cap it by
        // checking the stream ended within `max` bytes.
        match z.decompress_vec(input, out, FlushDecompress::Finish) {
            Ok(Status::StreamEnd) if out.len() <= max => Ok(()),
            Ok(_) => Err("gzip: the block does not end within its size".into()),
            Err(e) => Err(format!("gzip: {e}")),
        }
    }
}

/// A `Vec`'s spare capacity, at most `max` bytes of it, as zstd's output buffer.
struct SpareCapacity<'a> {
    vec: &'a mut Vec<u8>,
    max: usize,
}

// SAFETY: as zstd-safe's own implementation for Vec<u8>: the buffer is the Vec's allocation,
// `capacity` never exceeds it, and `filled_until` sets a length zstd has written up to.
unsafe impl zstd::zstd_safe::WriteBuf for SpareCapacity<'_> {
    fn as_slice(&self) -> &[u8] {
        self.vec.as_slice()
    }
    fn capacity(&self) -> usize {
        self.vec.capacity().min(self.max)
    }
    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.vec.as_mut_ptr()
    }
    unsafe fn filled_until(&mut self, n: usize) {
        // SAFETY: zstd initialized the first `n` bytes, and n <= capacity() <= the allocation.
        unsafe { self.vec.set_len(n) };
    }
}

/// One xz stream (each SquashFS block is one), with liblzma's memory use capped.
fn xz(input: &[u8], out: &mut [u8]) -> Result<usize, String> {
    use liblzma::stream::{Action, Status, Stream};
    const MEMLIMIT: u64 = 64 << 20;
    let mut s = Stream::new_stream_decoder(MEMLIMIT, 0).map_err(|e| format!("xz: {e}"))?;
    match s.process(input, out, Action::Finish) {
        Ok(Status::StreamEnd) => Ok(s.total_out() as usize),
        Ok(_) => Err("xz: the block does not end within its size".into()),
        Err(e) => Err(format!("xz: {e}")),
    }
}

/// LZO1X decoding (the format of `lzo1x_decompress_safe`), bounded by `out` and `input`:
/// every read and copy is checked, so a hostile stream ends in an error.
pub fn lzo1x_decompress(input: &[u8], out: &mut [u8]) -> Result<usize, String> {
    let bad = |what: &str| format!("lzo: {what}");
    let mut ip = 0usize;
    let mut op = 0usize;
    let out_len = out.len();
    let byte = |ip: &mut usize| -> Result<usize, String> {
        let b = *input.get(*ip).ok_or_else(|| bad("input overrun"))?;
        *ip += 1;
        Ok(usize::from(b))
    };
    // A run of zero bytes extends a length by 255 each, then one more byte.
    let long = |ip: &mut usize, base: usize| -> Result<usize, String> {
        let mut t = base;
        while *input.get(*ip).ok_or_else(|| bad("input overrun"))? == 0 {
            *ip += 1;
            t = t.checked_add(255).filter(|&t| t <= out_len + 255).ok_or_else(|| bad("length overrun"))?;
        }
        Ok(t + byte(ip)?)
    };
    let copy_literals = |ip: &mut usize, op: &mut usize, out: &mut [u8], n: usize| -> Result<(), String> {
        let src = input.get(*ip..*ip + n).ok_or_else(|| bad("input overrun"))?;
        out.get_mut(*op..*op + n).ok_or_else(|| bad("output overrun"))?.copy_from_slice(src);
        *ip += n;
        *op += n;
        Ok(())
    };
    let copy_match = |op: &mut usize, out: &mut [u8], dist: usize, n: usize| -> Result<(), String> {
        let from = op.checked_sub(dist).ok_or_else(|| bad("lookbehind overrun"))?;
        if *op + n > out.len() {
            return Err(bad("output overrun"));
        }
        for i in 0..n {
            out[*op + i] = out[from + i]; // overlapping copies repeat bytes, as LZ77 means
        }
        *op += n;
        Ok(())
    };
    let mut state;
    let first = *input.first().ok_or_else(|| bad("empty block"))?;
    if first > 17 {
        ip = 1;
        let t = usize::from(first) - 17;
        copy_literals(&mut ip, &mut op, out, t)?;
        state = if t < 4 { t } else { 4 };
    } else {
        state = 0;
    }
    loop {
        let t = byte(&mut ip)?;
        let next;
        if t < 16 {
            if state == 0 {
                let n = if t == 0 { long(&mut ip, 15)? } else { t } + 3;
                copy_literals(&mut ip, &mut op, out, n)?;
                state = 4;
                continue;
            }
            next = t & 3;
            let low = byte(&mut ip)?;
            if state != 4 {
                copy_match(&mut op, out, 1 + (t >> 2) + (low << 2), 2)?;
            } else {
                copy_match(&mut op, out, 1 + 0x0800 + (t >> 2) + (low << 2), 3)?;
            }
        } else if t >= 64 {
            next = t & 3;
            let low = byte(&mut ip)?;
            copy_match(&mut op, out, 1 + ((t >> 2) & 7) + (low << 3), (t >> 5) + 1)?;
        } else if t >= 32 {
            let mut n = (t & 31) + 2;
            if n == 2 {
                n = long(&mut ip, 31)? + 2;
            }
            let d = byte(&mut ip)? | (byte(&mut ip)? << 8);
            next = d & 3;
            copy_match(&mut op, out, 1 + (d >> 2), n)?;
        } else {
            let mut n = (t & 7) + 2;
            if n == 2 {
                n = long(&mut ip, 7)? + 2;
            }
            let d = byte(&mut ip)? | (byte(&mut ip)? << 8);
            next = d & 3;
            let dist = ((t & 8) << 11) + (d >> 2);
            if dist == 0 {
                // The end marker (0x11 0x00 0x00): the stream must end exactly here.
                return if n == 3 && ip == input.len() { Ok(op) } else { Err(bad("bad end of stream")) };
            }
            copy_match(&mut op, out, dist + 0x4000, n)?;
        }
        state = next;
        copy_literals(&mut ip, &mut op, out, next)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lzo_refuses_garbage_without_overrunning() {
        let mut out = vec![0u8; 64];
        for input in [&b""[..], &[0u8; 8][..], &[0x11, 0, 0, 0][..], &[20, 1, 2][..], &[0x40, 0xff][..]] {
            assert!(lzo1x_decompress(input, &mut out).is_err(), "{input:?}");
        }
    }

    #[test]
    fn lzo_literals_then_end() {
        // 22 = 5 literals (22 - 17), then the end marker.
        let input = [22, b'h', b'e', b'l', b'l', b'o', 0x11, 0, 0];
        let mut out = vec![0u8; 16];
        assert_eq!(lzo1x_decompress(&input, &mut out), Ok(5));
        assert_eq!(&out[..5], b"hello");
    }
}
