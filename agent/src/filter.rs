//! A peer's prefix filters, as Calico's BGPFilter rules write them: a CIDR matches exactly that
//! prefix unless a range of lengths is given (`prefixLength: {min, max}`), so `0.0.0.0/0` admits
//! the default route and nothing else, and `10.0.0.0/8` with `prefixLength: {max: 24}` admits
//! 10.0.0.0/8 and every prefix inside it up to /24.
//!
//! The same rule in text, for the API and `ternctl`: `10.0.0.0/8` (exact) or `10.0.0.0/8{8,24}`
//! (BIRD's notation for the lengths 8 to 24).

use std::fmt;

use ipnetwork::IpNetwork;
use serde::Deserialize;
use tern_bgp::PrefixRange;

/// A prefix filter rule: [`PrefixRange`] with Calico's spelling in YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrefixFilter(pub PrefixRange);

impl PrefixFilter {
    /// A rule that matches `prefix` and nothing else.
    pub fn exact(prefix: IpNetwork) -> PrefixFilter {
        PrefixFilter(PrefixRange {
            prefix,
            min_length: prefix.prefix(),
            max_length: prefix.prefix(),
        })
    }

    /// A rule for `cidr` with lengths `min` to `max` (each defaulting to the CIDR's own length
    /// and the family's longest), refused when the range is empty or outside the CIDR.
    pub fn range(
        cidr: IpNetwork,
        min: Option<u8>,
        max: Option<u8>,
    ) -> Result<PrefixFilter, String> {
        let longest = if cidr.is_ipv4() { 32 } else { 128 };
        let min = min.unwrap_or(cidr.prefix());
        let max = max.unwrap_or(longest);
        if min < cidr.prefix() || max > longest || min > max {
            return Err(format!(
                "prefix lengths {min} to {max} do not fit {cidr}: give {} <= min <= max <= {longest}",
                cidr.prefix()
            ));
        }
        Ok(PrefixFilter(PrefixRange {
            prefix: cidr,
            min_length: min,
            max_length: max,
        }))
    }

    /// Parses `10.0.0.0/8` (exact) or `10.0.0.0/8{8,24}` (a range of lengths).
    pub fn parse(text: &str) -> Result<PrefixFilter, String> {
        let text = text.trim();
        let (cidr, lengths) = match text.split_once('{') {
            None => (text, None),
            Some((cidr, rest)) => {
                let inner = rest.strip_suffix('}').ok_or_else(|| {
                    format!("{text:?}: a range is written {{min,max}}, e.g. 10.0.0.0/8{{8,24}}")
                })?;
                (cidr, Some(inner))
            }
        };
        let cidr = parse_cidr(cidr)?;
        let Some(lengths) = lengths else {
            return Ok(PrefixFilter::exact(cidr));
        };
        let (min, max) = lengths.split_once(',').ok_or_else(|| {
            format!("{text:?}: a range is written {{min,max}}, e.g. 10.0.0.0/8{{8,24}}")
        })?;
        let length = |s: &str| {
            s.trim()
                .parse::<u8>()
                .map_err(|_| format!("{text:?}: {s:?} is not a prefix length"))
        };
        PrefixFilter::range(cidr, Some(length(min)?), Some(length(max)?))
            .map_err(|e| format!("{text:?}: {e}"))
    }
}

/// A CIDR whose host bits are zero (`10.0.0.1/8` is refused: it would match nothing).
fn parse_cidr(text: &str) -> Result<IpNetwork, String> {
    let cidr: IpNetwork = text
        .trim()
        .parse()
        .map_err(|e| format!("{text:?} is not a CIDR: {e}"))?;
    if cidr.network() != cidr.ip() {
        return Err(format!(
            "{text:?} has host bits set: write {}/{}",
            cidr.network(),
            cidr.prefix()
        ));
    }
    Ok(cidr)
}

impl fmt::Display for PrefixFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let range = &self.0;
        write!(f, "{}", range.prefix)?;
        if range.min_length != range.prefix.prefix() || range.max_length != range.prefix.prefix() {
            write!(f, "{{{},{}}}", range.min_length, range.max_length)?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for PrefixFilter {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Lengths {
            #[serde(default)]
            min: Option<u8>,
            #[serde(default)]
            max: Option<u8>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Rule {
            cidr: String,
            #[serde(default)]
            prefix_length: Option<Lengths>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Rule(Rule),
        }
        let raw = Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "a filter is a CIDR (matched exactly), or {cidr: 10.0.0.0/8, prefixLength: {min: 8, max: 24}}",
            )
        })?;
        match raw {
            Raw::Text(text) => PrefixFilter::parse(&text),
            Raw::Rule(Rule {
                cidr,
                prefix_length,
            }) => parse_cidr(&cidr).and_then(|cidr| match prefix_length {
                None => Ok(PrefixFilter::exact(cidr)),
                Some(Lengths { min, max }) => PrefixFilter::range(cidr, min, max),
            }),
        }
        .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_bgp::Filter;

    impl PrefixFilter {
        fn matches(&self, prefix: IpNetwork) -> bool {
            Filter {
                ranges: vec![self.0],
            }
            .accepts(prefix)
        }
    }

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn a_cidr_matches_exactly_and_a_range_matches_its_lengths() {
        let default = PrefixFilter::parse("0.0.0.0/0").unwrap();
        assert!(default.matches(net("0.0.0.0/0")));
        assert!(
            !default.matches(net("10.0.0.0/8")),
            "only the default route"
        );
        assert!(!default.matches(net("::/0")), "not the other family");
        let range = PrefixFilter::parse("10.0.0.0/8{16,24}").unwrap();
        assert!(!range.matches(net("10.0.0.0/8")));
        assert!(range.matches(net("10.1.0.0/16")));
        assert!(range.matches(net("10.1.2.0/24")));
        assert!(!range.matches(net("10.1.2.0/25")));
        assert!(!range.matches(net("11.0.0.0/16")));
        assert_eq!(range.to_string(), "10.0.0.0/8{16,24}");
        assert_eq!(default.to_string(), "0.0.0.0/0");
    }

    #[test]
    fn yaml_takes_calicos_rule_form_and_refuses_what_cannot_match() {
        let rules: Vec<PrefixFilter> = serde_yaml::from_str(
            "- 0.0.0.0/0\n- {cidr: 10.0.0.0/8, prefixLength: {max: 24}}\n- {cidr: 'fd00::/8'}\n",
        )
        .unwrap();
        assert_eq!(rules[0], PrefixFilter::exact(net("0.0.0.0/0")));
        assert_eq!(rules[1].to_string(), "10.0.0.0/8{8,24}");
        assert_eq!(rules[2], PrefixFilter::exact(net("fd00::/8")));
        for (bad, says) in [
            ("- 10.0.0.1/8", "host bits"),
            ("- {cidr: 10.0.0.0/8, prefixLength: {min: 4}}", "do not fit"),
            (
                "- {cidr: 10.0.0.0/8, prefixLength: {max: 33}}",
                "do not fit",
            ),
            ("- 10.0.0.0/8{24,16}", "do not fit"),
            ("- 10.0.0.0/8{24", "{min,max}"),
            ("- {cidr: 10.0.0.0/8, le: 24}", "a filter is a CIDR"),
        ] {
            let error = serde_yaml::from_str::<Vec<PrefixFilter>>(bad)
                .unwrap_err()
                .to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
