//! The digest of a page's contents, the same on both sides of the
//! differential test. Pages of zeros are not listed at all (a readable
//! mapped page missing from a digest list reads as zeros).

/// A 64-bit digest of `bytes` (a page), over its little-endian 8-byte words:
/// FNV-1a's step per word with an extra shift-xor so high bits reach low
/// ones. Not cryptographic; collisions between different test pages are
/// vanishingly unlikely.
pub fn page_digest(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h ^= u64::from_le_bytes(word);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    h
}

/// [`page_digest`] over words already read (the runner reads pages as
/// `u64`s); equal to `page_digest` of their little-endian bytes.
pub fn words_digest(words: impl IntoIterator<Item = u64>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for w in words {
        h ^= w;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_words_agree_and_differ_per_byte() {
        let mut page = [0u8; 4096];
        let zero = page_digest(&page);
        page[4095] = 1;
        let one = page_digest(&page);
        assert_ne!(zero, one);
        let words = page
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()));
        assert_eq!(words_digest(words), one);
        page[4095] = 0;
        page[0] = 1;
        assert_ne!(page_digest(&page), one);
    }
}
