//! Samples packed the way Prometheus' TSDB packs them (the XOR chunk of the Gorilla paper):
//! timestamps as deltas of deltas, values as the XOR with the previous value. A series scraped
//! at a steady interval whose value rarely changes costs about two bits per sample; a jittery
//! interval and a moving value a few bytes. The layout follows Prometheus' `chunkenc/xor.go`
//! (bucket widths, leading/trailing-zero reuse) so that its measured figures carry over.

use super::{Millis, is_stale, stale_marker};

/// Samples per chunk: Prometheus' choice, a balance between compression and the cost of
/// decoding a chunk to read its last sample.
pub const SAMPLES_PER_CHUNK: u16 = 120;

/// Reads a chunk's bit stream back, most significant bit first, through a 64-bit buffer
/// refilled a byte at a time: most reads are a shift and a mask.
struct Reader<'a> {
    bytes: &'a [u8],
    /// The next byte to load into `buf`.
    next: usize,
    /// Unread bits, left-aligned.
    buf: u64,
    /// How many of `buf`'s bits are unread.
    valid: u8,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader {
            bytes,
            next: 0,
            buf: 0,
            valid: 0,
        }
    }

    /// Loads whole bytes until the buffer is full or the stream ends: eight at once away from
    /// the end.
    #[inline(never)]
    fn refill(&mut self) {
        let whole = (64 - self.valid) / 8;
        let word = self
            .bytes
            .get(self.next..self.next + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok());
        if let Some(word) = word
            && whole > 0
        {
            let bits = whole * 8;
            let fresh = u64::from_be_bytes(word) >> (64 - bits);
            self.buf |= fresh << (64 - self.valid - bits);
            self.next += usize::from(whole);
            self.valid += bits;
            return;
        }
        while self.valid <= 56 {
            let Some(&byte) = self.bytes.get(self.next) else {
                return;
            };
            self.buf |= u64::from(byte) << (56 - self.valid);
            self.next += 1;
            self.valid += 8;
        }
    }

    #[inline]
    fn bit(&mut self) -> bool {
        self.bits(1) == 1
    }

    /// The next `n` bits, at most 64. A chunk is only read as far as it was written, so the
    /// bits are there.
    #[inline]
    fn bits(&mut self, n: u8) -> u64 {
        if n > 56 {
            return self.wide_bits(n);
        }
        if n == 0 {
            return 0;
        }
        if self.valid < n {
            self.refill();
        }
        let v = self.buf >> (64 - n);
        self.buf <<= n;
        self.valid = self.valid.saturating_sub(n);
        v
    }

    /// More bits than the buffer holds after a refill: in two reads.
    #[cold]
    fn wide_bits(&mut self, n: u8) -> u64 {
        let high = self.bits(n - 32);
        (high << 32) | self.bits(32)
    }

    fn varint(&mut self) -> i64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let byte = self.bits(8);
            v |= (byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    }
}

/// Delta-of-delta buckets: (prefix bits, prefix length, payload bits), as in Prometheus.
const DOD_BUCKETS: [(u64, u8, u8); 3] = [(0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20)];

/// Up to [`SAMPLES_PER_CHUNK`] samples in time order, packed into a bit stream (most
/// significant bit first). A sealed chunk keeps only this; the encoder's state lives in [`Head`].
#[derive(Clone, Debug)]
pub struct Chunk {
    bytes: Vec<u8>,
    count: u16,
    first_t: Millis,
    last_t: Millis,
    /// The smallest and largest of the chunk's values, staleness markers left out, folded as
    /// `min_over_time` and `max_over_time` fold them; a staleness marker while there is none.
    /// A range that covers the whole chunk reads them instead of decoding it.
    min: f64,
    max: f64,
    /// Whether every value is a number (no NaN, no staleness marker) and none is below the one
    /// before it (an equal one has the same bits). Then `min` is the first value and `max` the
    /// last, and a counter has no reset inside the chunk: see [`Chunk::rising_ends`].
    rising: bool,
}

impl Default for Chunk {
    fn default() -> Chunk {
        Chunk {
            bytes: Vec::new(),
            count: 0,
            first_t: 0,
            last_t: 0,
            min: stale_marker(),
            max: stale_marker(),
            rising: true,
        }
    }
}

/// Which end of a chunk's values [`Extreme::fold`] keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extreme {
    Min,
    Max,
}

impl Extreme {
    /// Prometheus' fold for `min_over_time` / `max_over_time`: a NaN gives way to any value,
    /// and a tie keeps the earlier. Folding two runs' results equals folding the runs in turn,
    /// which is what lets a chunk's result stand for its values.
    pub fn fold(self, acc: Option<f64>, value: f64) -> Option<f64> {
        Some(match acc {
            None => value,
            Some(a) => {
                let better = match self {
                    Extreme::Min => value < a,
                    Extreme::Max => value > a,
                };
                if better || a.is_nan() { value } else { a }
            }
        })
    }
}

impl Chunk {
    pub fn is_full(&self) -> bool {
        self.count >= SAMPLES_PER_CHUNK
    }

    pub fn first_time(&self) -> Millis {
        self.first_t
    }

    pub fn last_time(&self) -> Millis {
        self.last_t
    }

    /// Heap bytes the chunk holds.
    pub fn bytes(&self) -> usize {
        self.bytes.capacity()
    }

    /// Samples packed in the chunk.
    pub fn count(&self) -> usize {
        usize::from(self.count)
    }

    /// The chunk's smallest or largest value (staleness markers left out), if it has any.
    pub fn extreme(&self, which: Extreme) -> Option<f64> {
        let v = match which {
            Extreme::Min => self.min,
            Extreme::Max => self.max,
        };
        (!is_stale(v)).then_some(v)
    }

    /// The first and the last sample of a chunk whose values never fall: all that `rate`,
    /// `increase` and `delta` read of it, as they read only a range's ends and its falls.
    pub fn rising_ends(&self) -> Option<((Millis, f64), (Millis, f64))> {
        (self.rising && self.count > 0)
            .then_some(((self.first_t, self.min), (self.last_t, self.max)))
    }

    /// The samples, oldest first.
    pub fn iter(&self) -> ChunkIter<'_> {
        ChunkIter {
            reader: Reader::new(&self.bytes),
            left: self.count,
            read: 0,
            t: 0,
            delta: 0,
            v: 0,
            leading: 0,
            trailing: 0,
        }
    }
}

/// The chunk a series appends to, and what encoding the next sample needs to know of the last.
#[derive(Clone, Debug, Default)]
pub struct Head {
    chunk: Chunk,
    /// Bits used in the last byte (0 means the last byte is full, or there is none).
    used: u8,
    last_delta: i64,
    last_v: u64,
    /// The leading and trailing zero counts of the last non-zero XOR, reused while they fit.
    window: Option<(u8, u8)>,
}

impl Head {
    pub fn chunk(&self) -> &Chunk {
        &self.chunk
    }

    /// The chunk, with its spare capacity given back: it takes no more samples.
    pub fn seal(self) -> Chunk {
        let mut chunk = self.chunk;
        chunk.bytes.shrink_to_fit();
        chunk
    }

    /// Appends a sample; `t` must be after the last one's.
    pub fn append(&mut self, t: Millis, value: f64) {
        let v = value.to_bits();
        match self.chunk.count {
            0 => {
                self.push_varint(t);
                self.push_bits(v, 64);
                self.chunk.first_t = t;
            }
            1 => {
                let delta = t - self.chunk.last_t;
                self.push_varint(delta);
                self.push_xor(v);
                self.last_delta = delta;
            }
            _ => {
                let delta = t - self.chunk.last_t;
                let dod = delta - self.last_delta;
                if dod == 0 {
                    self.push_bit(false);
                } else {
                    let bucket = DOD_BUCKETS.iter().find(|(_, _, width)| {
                        let half = 1i64 << (width - 1);
                        -half < dod && dod <= half
                    });
                    match bucket {
                        Some(&(prefix, prefix_len, width)) => {
                            self.push_bits(prefix, prefix_len);
                            self.push_bits(dod as u64, width);
                        }
                        None => {
                            self.push_bits(0b1111, 4);
                            self.push_bits(dod as u64, 64);
                        }
                    }
                }
                self.push_xor(v);
                self.last_delta = delta;
            }
        }
        let rises =
            self.chunk.count == 0 || value > f64::from_bits(self.last_v) || v == self.last_v;
        self.chunk.rising &= rises && !value.is_nan();
        self.chunk.last_t = t;
        self.last_v = v;
        self.chunk.count += 1;
        if !is_stale(value) {
            let chunk = &mut self.chunk;
            let (min, max) = (chunk.extreme(Extreme::Min), chunk.extreme(Extreme::Max));
            chunk.min = Extreme::Min.fold(min, value).unwrap_or(value);
            chunk.max = Extreme::Max.fold(max, value).unwrap_or(value);
        }
    }

    fn push_xor(&mut self, v: u64) {
        let xor = v ^ self.last_v;
        if xor == 0 {
            self.push_bit(false);
            return;
        }
        self.push_bit(true);
        // Leading zeros are stored in 5 bits: more than 31 is written as 31.
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;
        match self.window {
            Some((lead, trail)) if leading >= lead && trailing >= trail => {
                self.push_bit(false);
                self.push_bits(xor >> trail, 64 - lead - trail);
            }
            _ => {
                self.push_bit(true);
                let width = 64 - leading - trailing;
                self.push_bits(u64::from(leading), 5);
                // 64 significant bits do not fit in 6 bits; 0 stands for them.
                self.push_bits(u64::from(width % 64), 6);
                self.push_bits(xor >> trailing, width);
                self.window = Some((leading, trailing));
            }
        }
    }

    fn push_bit(&mut self, bit: bool) {
        if self.used == 0 {
            self.chunk.bytes.push(0);
        }
        if bit {
            let last = self.chunk.bytes.len() - 1;
            self.chunk.bytes[last] |= 0x80 >> self.used;
        }
        self.used = (self.used + 1) % 8;
    }

    /// The low `n` bits of `value`, most significant first, a byte's worth at a time.
    fn push_bits(&mut self, value: u64, n: u8) {
        let mut left = n;
        while left > 0 {
            if self.used == 0 {
                self.chunk.bytes.push(0);
            }
            let room = 8 - self.used;
            let take = room.min(left);
            let part = ((value >> (left - take)) & ((1u64 << take) - 1)) as u8;
            let last = self.chunk.bytes.len() - 1;
            self.chunk.bytes[last] |= part << (room - take);
            self.used = (self.used + take) % 8;
            left -= take;
        }
    }

    fn push_varint(&mut self, value: i64) {
        // Zig-zag, then 7 bits a byte as Go's binary.PutVarint.
        let mut v = ((value << 1) ^ (value >> 63)) as u64;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.push_bits(u64::from(byte), 8);
                return;
            }
            self.push_bits(u64::from(byte | 0x80), 8);
        }
    }
}

pub struct ChunkIter<'a> {
    reader: Reader<'a>,
    left: u16,
    read: u16,
    t: Millis,
    delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
}

impl ChunkIter<'_> {
    fn read_xor(&mut self) {
        if !self.reader.bit() {
            return;
        }
        if self.reader.bit() {
            let both = self.reader.bits(11);
            self.leading = (both >> 6) as u8;
            let width = (both & 0x3f) as u8;
            let width = if width == 0 { 64 } else { width };
            self.trailing = 64 - self.leading - width;
        }
        let width = 64 - self.leading - self.trailing;
        self.v ^= self.reader.bits(width) << self.trailing;
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = (Millis, f64);

    fn next(&mut self) -> Option<(Millis, f64)> {
        if self.left == 0 {
            return None;
        }
        match self.read {
            0 => {
                self.t = self.reader.varint();
                self.v = self.reader.bits(64);
            }
            1 => {
                self.delta = self.reader.varint();
                self.t += self.delta;
                self.read_xor();
            }
            _ => {
                // The bucket's prefix: up to four 1s ended by a 0.
                let mut prefix = 0u8;
                while prefix < 4 && self.reader.bit() {
                    prefix += 1;
                }
                let dod = match prefix {
                    0 => 0,
                    1..=3 => {
                        let width = DOD_BUCKETS[usize::from(prefix - 1)].2;
                        let raw = self.reader.bits(width);
                        // Sign-extend from `width` bits.
                        ((raw << (64 - width)) as i64) >> (64 - width)
                    }
                    _ => self.reader.bits(64) as i64,
                };
                self.delta += dod;
                self.t += self.delta;
                self.read_xor();
            }
        }
        self.read += 1;
        self.left -= 1;
        Some((self.t, f64::from_bits(self.v)))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn round_trip(samples: &[(Millis, f64)]) -> Vec<(Millis, u64)> {
        let mut head = Head::default();
        for &(t, v) in samples {
            head.append(t, v);
        }
        head.chunk().iter().map(|(t, v)| (t, v.to_bits())).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn every_sample_comes_back_bit_for_bit(
            start in -1_000_000_000_000i64..4_000_000_000_000,
            steps in proptest::collection::vec((1i64..100_000_000, any::<u64>(), 0u8..4), 1..120),
        ) {
            let mut t = start;
            let mut samples = Vec::new();
            let mut last = 0.0f64;
            for (step, bits, kind) in steps {
                t += step;
                // Mostly repeated or nearby values, as series are; sometimes anything at all.
                let v = match kind {
                    0 => last,
                    1 => last + (bits % 7) as f64,
                    2 => f64::from_bits(bits),
                    _ => f64::from_bits(crate::series::STALE_NAN),
                };
                last = v;
                samples.push((t, v));
            }
            let want: Vec<(Millis, u64)> = samples.iter().map(|(t, v)| (*t, v.to_bits())).collect();
            prop_assert_eq!(round_trip(&samples), want);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn the_chunk_extremes_are_the_fold_of_its_values(
            values in proptest::collection::vec((any::<u64>(), 0u8..6), 1..120),
        ) {
            let mut head = Head::default();
            let mut kept = Vec::new();
            for (i, (bits, kind)) in values.into_iter().enumerate() {
                let v = match kind {
                    0 => f64::from_bits(crate::series::STALE_NAN),
                    1 => f64::NAN,
                    2 => if bits % 2 == 0 { 0.0 } else { -0.0 },
                    3 => f64::from_bits(bits),
                    _ => (bits % 5) as f64,
                };
                head.append(i as Millis * 1000, v);
                if !is_stale(v) {
                    kept.push(v);
                }
            }
            for which in [Extreme::Min, Extreme::Max] {
                let want = kept.iter().fold(None, |acc, &v| which.fold(acc, v));
                let got = head.chunk().extreme(which);
                prop_assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits));
            }
        }
    }

    #[test]
    fn a_steady_series_costs_about_two_bits_a_sample() {
        let mut head = Head::default();
        for i in 0..120 {
            head.append(1_800_000_000_000 + i * 10_000, 5.0);
        }
        let chunk = head.seal();
        // The first sample (6 bytes of time, 8 of value) and the first interval (3 bytes); the
        // other 118 samples take 2 bits each (30 bytes).
        assert!(chunk.bytes() <= 6 + 8 + 3 + 30, "{} bytes", chunk.bytes());
    }

    #[test]
    fn a_counter_on_a_jittery_interval_stays_under_four_bytes_a_sample() {
        let mut head = Head::default();
        let (mut t, mut total) = (1_800_000_000_000, 1_000.0);
        for i in 0..120 {
            t += 1000 + (i * 37 % 11) - 5;
            total += (i % 7) as f64;
            head.append(t, total);
        }
        let chunk = head.seal();
        assert!(chunk.bytes() < 4 * 120, "{} bytes", chunk.bytes());
    }
}
