//! The names a client certificate carries (RFC 5280): its subject's common names (section
//! 4.1.2.6, attribute 2.5.4.3 of X.520) and its DNS subject alternative names (section
//! 4.2.1.6), which `apiTcp.allowedClientNames` is matched against. The certificate itself is
//! parsed by webpki (the DNS names come from it); the subject's common names are read here with
//! a small DER walk (X.690), which never panics on any input.

use rustls_pki_types::CertificateDer;

/// DER tags (X.690 section 8): the constructed SEQUENCE and SET, the OBJECT IDENTIFIER, and the
/// string types a common name may have (RFC 5280 section 4.1.2.4's DirectoryString, plus the
/// IA5String some CAs use). BMPString and UniversalString are not read.
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const PRINTABLE_STRING: u8 = 0x13;
const TELETEX_STRING: u8 = 0x14;
const IA5_STRING: u8 = 0x16;
/// The OBJECT IDENTIFIER 2.5.4.3, id-at-commonName, as DER contents.
const COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];

/// The subject common names, then the DNS subject alternative names, of a certificate; none
/// if it does not parse.
pub(super) fn names(certificate: &CertificateDer<'_>) -> Vec<String> {
    let Ok(parsed) = webpki::EndEntityCert::try_from(certificate) else {
        return Vec::new();
    };
    let mut names = common_names(parsed.subject());
    names.extend(parsed.valid_dns_names().map(str::to_owned));
    names
}

/// The common names in the contents of an RDNSequence (a Name without its outer SEQUENCE):
///
/// ```text
/// Name ::= SEQUENCE OF RelativeDistinguishedName
/// RelativeDistinguishedName ::= SET SIZE (1..MAX) OF AttributeTypeAndValue
/// AttributeTypeAndValue ::= SEQUENCE { type OBJECT IDENTIFIER, value ANY }
/// ```
///
/// Malformed parts end the walk: what was read before them is kept.
pub(super) fn common_names(mut subject: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    while let Some((SET, mut set, rest)) = element(subject) {
        subject = rest;
        while let Some((SEQUENCE, attribute, rest)) = element(set) {
            set = rest;
            let Some((OID, oid, value)) = element(attribute) else {
                break;
            };
            if oid != COMMON_NAME {
                continue;
            }
            if let Some((UTF8_STRING | PRINTABLE_STRING | TELETEX_STRING | IA5_STRING, text, _)) =
                element(value)
                && let Ok(text) = std::str::from_utf8(text)
            {
                names.push(text.to_owned());
            }
        }
    }
    names
}

/// One DER element at the start of `input`: its tag, its contents and what follows. Only
/// single-octet tags and definite lengths (DER has no other), at most four length octets.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let octets = rest.get(..count)?;
        let length = octets
            .iter()
            .fold(0_usize, |length, &octet| (length << 8) | usize::from(octet));
        (length, rest.get(count..)?)
    };
    if tag & 0x1f == 0x1f || length > rest.len() {
        return None;
    }
    let (contents, after) = rest.split_at(length);
    Some((tag, contents, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An AttributeTypeAndValue in its own RelativeDistinguishedName.
    fn rdn(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        let mut attribute = vec![OID, oid.len() as u8];
        attribute.extend(oid);
        attribute.extend([tag, value.len() as u8]);
        attribute.extend(value);
        let mut sequence = vec![SEQUENCE, attribute.len() as u8];
        sequence.extend(attribute);
        let mut set = vec![SET, sequence.len() as u8];
        set.extend(sequence);
        set
    }

    #[test]
    fn the_common_name_is_read_among_the_other_attributes() {
        // O=tern (2.5.4.10), CN=operator, CN=backup as a PrintableString.
        let mut subject = rdn(&[0x55, 0x04, 0x0a], UTF8_STRING, b"tern");
        subject.extend(rdn(&COMMON_NAME, UTF8_STRING, b"operator"));
        subject.extend(rdn(&COMMON_NAME, PRINTABLE_STRING, b"backup"));
        assert_eq!(common_names(&subject), ["operator", "backup"]);
    }

    #[test]
    fn a_long_form_length_is_read() {
        let long = vec![b'x'; 200];
        let mut attribute = vec![OID, 3];
        attribute.extend(COMMON_NAME);
        attribute.extend([UTF8_STRING, 0x81, 200]);
        attribute.extend(&long);
        let mut subject = vec![SET, 0x82, 0, 0, SEQUENCE, 0x81, attribute.len() as u8];
        subject.extend(&attribute);
        let inner = (subject.len() - 4) as u16;
        subject[2..4].copy_from_slice(&inner.to_be_bytes());
        assert_eq!(common_names(&subject), [String::from_utf8(long).unwrap()]);
    }

    #[test]
    fn truncated_or_odd_subjects_yield_what_came_before_and_never_panic() {
        let mut subject = rdn(&COMMON_NAME, UTF8_STRING, b"operator");
        let good = subject.len();
        subject.extend(rdn(&COMMON_NAME, UTF8_STRING, b"second"));
        for cut in 0..subject.len() {
            let names = common_names(&subject[..cut]);
            assert_eq!(names.len(), usize::from(cut >= good), "cut at {cut}");
        }
        // A BMPString is not read; lengths over four octets or indefinite are refused.
        assert!(common_names(&rdn(&COMMON_NAME, 0x1e, &[0, b'a'])).is_empty());
        assert_eq!(element(&[SET, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(element(&[SET, 0x80, 0, 0]), None);
        assert_eq!(element(&[0x1f, 0]), None);
    }
}
