//! MD5 (an object's eTag) with AWS-LC's assembly, about 25% faster on one core than the
//! pure-Rust `md-5` crate (810 against 640 MB/s here, see docs/benchmarks.md): a large upload
//! is hashed at the pace of its slowest digest, and MD5 is that one. AWS-LC is already built
//! for TLS (rustls, object_store), so this adds no C library to the build.

use aws_lc_sys::{MD5_CTX, MD5_Final, MD5_Init, MD5_Update};

/// A running MD5.
pub struct Md5 {
    ctx: MD5_CTX,
}

impl Md5 {
    pub fn new() -> Self {
        // SAFETY: MD5_CTX is plain integers and a byte buffer, valid when zeroed, and
        // MD5_Init only writes to the context it is given (it always returns 1).
        unsafe {
            let mut ctx = std::mem::zeroed::<MD5_CTX>();
            MD5_Init(&mut ctx);
            Self { ctx }
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        // SAFETY: the pointer and length come from one live slice; the context was initialised
        // by `new`, and `&mut self` makes this its only user (MD5_Update always returns 1).
        unsafe {
            MD5_Update(&mut self.ctx, data.as_ptr().cast(), data.len());
        }
    }

    pub fn finalize(mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        // SAFETY: `out` has the 16 bytes MD5_Final writes; the context is initialised.
        unsafe {
            MD5_Final(out.as_mut_ptr(), &mut self.ctx);
        }
        out
    }

    /// The MD5 of `data`.
    pub fn digest(data: &[u8]) -> [u8; 16] {
        let mut md5 = Self::new();
        md5.update(data);
        md5.finalize()
    }
}

impl Default for Md5 {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Md5 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Md5")
    }
}

#[cfg(test)]
mod tests {
    use super::Md5;

    /// RFC 1321's test suite (appendix A.5).
    #[test]
    fn rfc_1321_vectors() {
        let cases: [(&[u8], &str); 7] = [
            (b"", "d41d8cd98f00b204e9800998ecf8427e"),
            (b"a", "0cc175b9c0f1b6a831c399e269772661"),
            (b"abc", "900150983cd24fb0d6963f7d28e17f72"),
            (b"message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                b"abcdefghijklmnopqrstuvwxyz",
                "c3fcd3d76192e4007dfb496cca67e13b",
            ),
            (
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                "d174ab98d277d9f5a5611c2c9f419d9f",
            ),
            (
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(hex::encode(Md5::digest(input)), want, "{input:?}");
        }
    }

    /// Pieces of every length around the 64-byte block, fed one after another, give the
    /// digest of the whole, and agree with the pure-Rust crate on a large input.
    #[test]
    fn pieces_agree_with_the_whole_and_with_md_5() {
        use ::md5::Digest as _;
        let data: Vec<u8> = (0..1_200_000u32).map(|i| (i * 31 + i / 7) as u8).collect();
        let whole = Md5::digest(&data);
        assert_eq!(whole, <[u8; 16]>::from(::md5::Md5::digest(&data)));
        for step in [1, 3, 63, 64, 65, 127, 4096, 65_537] {
            let mut md5 = Md5::new();
            for piece in data[..200_000].chunks(step) {
                md5.update(piece);
            }
            md5.update(&data[200_000..]);
            assert_eq!(md5.finalize(), whole, "pieces of {step}");
        }
    }
}
