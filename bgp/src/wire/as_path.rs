//! AS_PATH and AGGREGATOR values (RFC 4271 section 4.3, RFC 6793): segments of 2- or 4-octet AS
//! numbers, as the session negotiated, with AS_TRANS standing in for numbers above 65535 toward
//! 2-octet speakers. The attribute framing and RFC 7606 handling live in `attributes`.

use std::fmt;
use std::net::Ipv4Addr;

use super::AS_TRANS;
use super::reader::Reader;

/// AS_PATH segment types (RFC 4271, RFC 5065).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentType {
    /// 1: an unordered set of ASes (from aggregation).
    Set,
    /// 2: an ordered sequence of ASes.
    Sequence,
    /// 3: an ordered sequence of member ASes within a confederation.
    ConfedSequence,
    /// 4: an unordered set of member ASes within a confederation.
    ConfedSet,
}

impl SegmentType {
    fn from_wire(value: u8) -> Option<SegmentType> {
        Some(match value {
            1 => SegmentType::Set,
            2 => SegmentType::Sequence,
            3 => SegmentType::ConfedSequence,
            4 => SegmentType::ConfedSet,
            _ => return None,
        })
    }

    fn to_wire(self) -> u8 {
        match self {
            SegmentType::Set => 1,
            SegmentType::Sequence => 2,
            SegmentType::ConfedSequence => 3,
            SegmentType::ConfedSet => 4,
        }
    }

    /// Whether the segment belongs to a confederation (not counted in the path length).
    pub fn is_confed(self) -> bool {
        matches!(self, SegmentType::ConfedSequence | SegmentType::ConfedSet)
    }
}

/// One AS_PATH segment, with AS numbers always held in four octets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AsSegment {
    /// Set, sequence, or their confederation forms.
    pub segment_type: SegmentType,
    /// The AS numbers, at most 255 per segment on the wire.
    pub asns: Vec<u32>,
}

/// An AS path: the AS_PATH attribute, merged with AS4_PATH when it came from a 2-octet speaker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AsPath {
    /// The segments, in wire order.
    pub segments: Vec<AsSegment>,
}

impl AsPath {
    /// A path of one AS_SEQUENCE.
    pub fn sequence(asns: impl Into<Vec<u32>>) -> AsPath {
        let asns = asns.into();
        if asns.is_empty() {
            return AsPath::default();
        }
        AsPath {
            segments: vec![AsSegment {
                segment_type: SegmentType::Sequence,
                asns,
            }],
        }
    }

    /// The path length used by the decision process (RFC 4271 section 9.1.2.2): a set counts as
    /// one, confederation segments count as nothing.
    pub fn len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s.segment_type {
                SegmentType::Sequence => s.asns.len(),
                SegmentType::Set => 1,
                SegmentType::ConfedSequence | SegmentType::ConfedSet => 0,
            })
            .sum()
    }

    /// Whether the path has no AS.
    pub fn is_empty(&self) -> bool {
        self.segments.iter().all(|s| s.asns.is_empty())
    }

    /// Every AS number in the path, in order.
    pub fn asns(&self) -> impl Iterator<Item = u32> + '_ {
        self.segments.iter().flat_map(|s| s.asns.iter().copied())
    }

    pub(super) fn decode(value: &[u8], four_octet: bool) -> Result<AsPath, &'static str> {
        let asn_len = if four_octet { 4 } else { 2 };
        let mut r = Reader::new(value);
        let mut segments = Vec::new();
        while !r.is_empty() {
            let segment_type = SegmentType::from_wire(r.u8().ok_or("segment header truncated")?)
                .ok_or("unknown segment type")?;
            let count = usize::from(r.u8().ok_or("segment header truncated")?);
            if count == 0 {
                return Err("empty segment");
            }
            let body = r
                .take(count * asn_len)
                .ok_or("segment overruns the attribute")?;
            let mut b = Reader::new(body);
            let mut asns = Vec::with_capacity(count);
            for _ in 0..count {
                let asn = if four_octet {
                    b.u32()
                } else {
                    b.u16().map(u32::from)
                };
                let asn = asn.ok_or("segment overruns the attribute")?;
                if asn == 0 {
                    return Err("AS 0 is reserved (RFC 7607)");
                }
                asns.push(asn);
            }
            segments.push(AsSegment { segment_type, asns });
        }
        Ok(AsPath { segments })
    }

    /// Encodes the segments. In 2-octet form, AS numbers above 65535 become AS_TRANS. With
    /// `skip_confed`, confederation segments are left out (AS4_PATH must not carry them).
    pub(super) fn encode(&self, four_octet: bool, skip_confed: bool, out: &mut Vec<u8>) {
        for segment in &self.segments {
            if skip_confed && segment.segment_type.is_confed() {
                continue;
            }
            for chunk in segment.asns.chunks(255) {
                out.push(segment.segment_type.to_wire());
                out.push(chunk.len() as u8);
                for &asn in chunk {
                    if four_octet {
                        out.extend_from_slice(&asn.to_be_bytes());
                    } else {
                        let asn = u16::try_from(asn).unwrap_or(AS_TRANS as u16);
                        out.extend_from_slice(&asn.to_be_bytes());
                    }
                }
            }
        }
    }

    /// Whether a 2-octet speaker needs AS4_PATH to learn this path's real AS numbers.
    pub(super) fn needs_as4_path(&self) -> bool {
        self.segments
            .iter()
            .filter(|s| !s.segment_type.is_confed())
            .any(|s| s.asns.iter().any(|&asn| asn > 0xffff))
    }

    /// RFC 6793 section 4.2.3: keeps the leading AS_PATH entries that AS4_PATH does not cover
    /// and appends AS4_PATH. When AS_PATH is shorter, AS4_PATH is ignored.
    pub(super) fn merge_as4(self, as4: AsPath) -> AsPath {
        let mut need = match self.len().checked_sub(as4.len()) {
            Some(need) => need,
            None => return self,
        };
        let mut segments = Vec::with_capacity(self.segments.len() + as4.segments.len());
        for segment in self.segments {
            if segment.segment_type.is_confed() {
                segments.push(segment);
                continue;
            }
            if need == 0 {
                break;
            }
            match segment.segment_type {
                SegmentType::Set => {
                    need -= 1;
                    segments.push(segment);
                }
                _ => {
                    let take = need.min(segment.asns.len());
                    need -= take;
                    let mut segment = segment;
                    segment.asns.truncate(take);
                    segments.push(segment);
                }
            }
        }
        segments.extend(as4.segments);
        AsPath { segments }
    }
}

impl fmt::Display for AsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for segment in &self.segments {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            let (open, close) = match segment.segment_type {
                SegmentType::Sequence => ("", ""),
                SegmentType::Set => ("{", "}"),
                SegmentType::ConfedSequence => ("(", ")"),
                SegmentType::ConfedSet => ("[", "]"),
            };
            f.write_str(open)?;
            for (i, asn) in segment.asns.iter().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{asn}")?;
            }
            f.write_str(close)?;
        }
        Ok(())
    }
}

/// AGGREGATOR: the AS and router that formed an aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aggregator {
    /// The aggregating AS (merged from AS4_AGGREGATOR toward 2-octet speakers).
    pub asn: u32,
    /// The aggregating router's BGP identifier.
    pub address: Ipv4Addr,
}
