//! One test per error case of RFC 7606 (and the RFC 4271 section 6 errors it keeps): each asserts
//! the outcome, the NOTIFICATION code and subcode, and that what can be kept is kept.

mod common;

use std::net::Ipv4Addr;

use common::{four_octet, hex, message};
use tern_bgp::wire::*;

const ORIGIN: &str = "40 01 01 00";
const AS_PATH: &str = "40 02 06 02 01 0000fde9";
const NEXT_HOP: &str = "40 03 04 c0000201";
const NLRI: &str = "18 0a0100";

/// An UPDATE with no withdrawals, the given attributes and NLRI.
fn update_bytes(attributes: &str, nlri: &str) -> Vec<u8> {
    let attributes = hex(attributes);
    let body = format!(
        "0000 {:04x} {} {}",
        attributes.len(),
        attributes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        nlri
    );
    message(2, &body)
}

/// Decodes an UPDATE that must not reset the session.
fn decode_ok(bytes: &[u8], context: &Context) -> Update {
    match Message::decode(bytes, context) {
        Ok(Message::Update(update)) => update,
        other => panic!("expected an UPDATE, got {other:?}"),
    }
}

/// Decodes a message that must fail with the given outcome, code and subcode.
#[track_caller]
fn decode_err(bytes: &[u8], context: &Context, outcome: Outcome, code: u8, subcode: u8) -> Error {
    let error = Message::decode(bytes, context).expect_err("decoding should fail");
    assert_eq!(error.outcome, outcome, "outcome of {error}");
    assert_eq!(
        (error.notification.code, error.notification.subcode),
        (code, subcode),
        "{error}"
    );
    error
}

/// Asserts the UPDATE kept its routes but carries exactly one non-fatal error as given.
#[track_caller]
fn assert_single_error(update: &Update, outcome: Outcome, subcode: u8) -> &Error {
    assert_eq!(update.errors.len(), 1, "errors: {:?}", update.errors);
    let error = &update.errors[0];
    assert_eq!(error.outcome, outcome, "{error}");
    assert_eq!(error.notification.code, code::UPDATE_MESSAGE);
    assert_eq!(error.notification.subcode, subcode, "{error}");
    assert_eq!(update.outcome(), Some(outcome));
    error
}

fn treat_as_withdraw_case(attributes: &str, subcode: u8) -> Update {
    let bytes = update_bytes(attributes, NLRI);
    let update = decode_ok(&bytes, &four_octet());
    assert_single_error(&update, Outcome::TreatAsWithdraw, subcode);
    assert!(update.treat_as_withdraw());
    assert_eq!(
        update.nlri.len(),
        1,
        "the routes to withdraw are still known"
    );
    update
}

#[test]
fn origin_with_a_wrong_length_is_treat_as_withdraw() {
    let update = treat_as_withdraw_case(
        &format!("40 01 02 0000 {AS_PATH} {NEXT_HOP}"),
        update_subcode::ATTRIBUTE_LENGTH_ERROR,
    );
    assert_eq!(
        update.errors[0].notification.data,
        hex("40 01 02 0000"),
        "data is the attribute"
    );
}

#[test]
fn origin_with_an_undefined_value_is_treat_as_withdraw() {
    treat_as_withdraw_case(
        &format!("40 01 01 03 {AS_PATH} {NEXT_HOP}"),
        update_subcode::INVALID_ORIGIN_ATTRIBUTE,
    );
}

#[test]
fn as_path_with_an_unknown_segment_type_is_treat_as_withdraw() {
    treat_as_withdraw_case(
        &format!("{ORIGIN} 40 02 06 07 01 0000fde9 {NEXT_HOP}"),
        update_subcode::MALFORMED_AS_PATH,
    );
}

#[test]
fn as_path_with_an_empty_segment_is_treat_as_withdraw() {
    treat_as_withdraw_case(
        &format!("{ORIGIN} 40 02 02 02 00 {NEXT_HOP}"),
        update_subcode::MALFORMED_AS_PATH,
    );
}

#[test]
fn as_path_segment_overrunning_the_attribute_is_treat_as_withdraw() {
    treat_as_withdraw_case(
        &format!("{ORIGIN} 40 02 06 02 02 0000fde9 {NEXT_HOP}"),
        update_subcode::MALFORMED_AS_PATH,
    );
}

#[test]
fn as_path_with_octets_left_after_the_last_segment_is_treat_as_withdraw() {
    treat_as_withdraw_case(
        &format!("{ORIGIN} 40 02 07 02 01 0000fde9 02 {NEXT_HOP}"),
        update_subcode::MALFORMED_AS_PATH,
    );
}

#[test]
fn next_hop_with_a_wrong_length_is_treat_as_withdraw() {
    treat_as_withdraw_case(
        &format!("{ORIGIN} {AS_PATH} 40 03 05 c000020100"),
        update_subcode::ATTRIBUTE_LENGTH_ERROR,
    );
}

#[test]
fn next_hop_that_is_not_unicast_is_treat_as_withdraw() {
    for address in ["e0000001", "00000000", "ffffffff"] {
        treat_as_withdraw_case(
            &format!("{ORIGIN} {AS_PATH} 40 03 04 {address}"),
            update_subcode::INVALID_NEXT_HOP_ATTRIBUTE,
        );
    }
}

#[test]
fn med_with_a_wrong_length_is_treat_as_withdraw() {
    treat_as_withdraw_case(
        &format!("{ORIGIN} {AS_PATH} {NEXT_HOP} 80 04 03 000064"),
        update_subcode::ATTRIBUTE_LENGTH_ERROR,
    );
}

#[test]
fn local_pref_with_a_wrong_length_is_treat_as_withdraw() {
    treat_as_withdraw_case(
        &format!("{ORIGIN} {AS_PATH} {NEXT_HOP} 40 05 02 0064"),
        update_subcode::ATTRIBUTE_LENGTH_ERROR,
    );
}

#[test]
fn local_pref_from_an_external_peer_is_discarded_and_the_routes_kept() {
    let bytes = update_bytes(
        &format!("{ORIGIN} {AS_PATH} {NEXT_HOP} 40 05 04 00000064"),
        NLRI,
    );
    let external = Context {
        external: true,
        ..four_octet()
    };
    let update = decode_ok(&bytes, &external);
    assert_single_error(
        &update,
        Outcome::AttributeDiscard,
        update_subcode::MALFORMED_ATTRIBUTE_LIST,
    );
    assert!(!update.treat_as_withdraw());
    assert_eq!(update.attributes.local_pref, None);
    assert_eq!(
        decode_ok(&bytes, &four_octet()).attributes.local_pref,
        Some(100)
    );
}

#[test]
fn atomic_aggregate_with_a_value_is_discarded() {
    let bytes = update_bytes(&format!("{ORIGIN} {AS_PATH} {NEXT_HOP} 40 06 01 00"), NLRI);
    let update = decode_ok(&bytes, &four_octet());
    assert_single_error(
        &update,
        Outcome::AttributeDiscard,
        update_subcode::ATTRIBUTE_LENGTH_ERROR,
    );
    assert!(!update.attributes.atomic_aggregate);
    assert_eq!(update.nlri.len(), 1);
}

#[test]
fn aggregator_of_the_wrong_width_for_the_session_is_discarded() {
    // Eight octets (4-octet AS) on a session that negotiated 2-octet AS numbers.
    let attributes = format!("{ORIGIN} 40 02 04 02 01 fde9 {NEXT_HOP} c0 07 08 0000fde9 0a000001");
    let update = decode_ok(&update_bytes(&attributes, NLRI), &Context::default());
    assert_single_error(
        &update,
        Outcome::AttributeDiscard,
        update_subcode::ATTRIBUTE_LENGTH_ERROR,
    );
    assert_eq!(update.attributes.aggregator, None);
}

#[test]
fn communities_not_a_non_zero_multiple_of_four_are_treat_as_withdraw() {
    for value in ["03 fde900", "00"] {
        treat_as_withdraw_case(
            &format!("{ORIGIN} {AS_PATH} {NEXT_HOP} c0 08 {value}"),
            update_subcode::ATTRIBUTE_LENGTH_ERROR,
        );
    }
}

#[test]
fn originator_id_with_a_wrong_length_is_treat_as_withdraw() {
    treat_as_withdraw_case(
        &format!("{ORIGIN} {AS_PATH} {NEXT_HOP} 80 09 03 0a0000"),
        update_subcode::ATTRIBUTE_LENGTH_ERROR,
    );
}

#[test]
fn cluster_list_not_a_non_zero_multiple_of_four_is_treat_as_withdraw() {
    treat_as_withdraw_case(
        &format!("{ORIGIN} {AS_PATH} {NEXT_HOP} 80 0a 05 0a00000100"),
        update_subcode::ATTRIBUTE_LENGTH_ERROR,
    );
}

#[test]
fn originator_id_and_cluster_list_from_an_external_peer_are_discarded() {
    let attributes = format!("{ORIGIN} {AS_PATH} {NEXT_HOP} 80 09 04 0a000005 80 0a 04 0a000007");
    let external = Context {
        external: true,
        ..four_octet()
    };
    let update = decode_ok(&update_bytes(&attributes, NLRI), &external);
    assert_eq!(update.errors.len(), 2);
    assert_eq!(update.outcome(), Some(Outcome::AttributeDiscard));
    assert_eq!(update.attributes.originator_id, None);
    assert!(update.attributes.cluster_list.is_empty());
}

#[test]
fn extended_communities_not_a_multiple_of_eight_are_treat_as_withdraw() {
    treat_as_withdraw_case(
        &format!("{ORIGIN} {AS_PATH} {NEXT_HOP} c0 10 07 0002fde9000000"),
        update_subcode::ATTRIBUTE_LENGTH_ERROR,
    );
}

#[test]
fn large_communities_not_a_multiple_of_twelve_are_treat_as_withdraw() {
    treat_as_withdraw_case(
        &format!("{ORIGIN} {AS_PATH} {NEXT_HOP} c0 20 08 0000fde900000001"),
        update_subcode::ATTRIBUTE_LENGTH_ERROR,
    );
}

#[test]
fn mp_reach_with_an_impossible_next_hop_length_disables_the_family() {
    let attributes = format!("80 0e 0a 0002 01 05 2001db8000 00 {ORIGIN} {AS_PATH}");
    let error = decode_err(
        &update_bytes(&attributes, ""),
        &four_octet(),
        Outcome::AfiSafiDisable(Family::IPV6_UNICAST),
        code::UPDATE_MESSAGE,
        update_subcode::OPTIONAL_ATTRIBUTE_ERROR,
    );
    assert!(matches!(error.reason, Reason::InvalidNextHop(_)));
}

#[test]
fn mp_reach_with_a_prefix_longer_than_128_bits_disables_the_family() {
    let attributes =
        format!("80 0e 17 0002 01 10 20010db8000000000000000000000001 00 81 20 {ORIGIN} {AS_PATH}");
    decode_err(
        &update_bytes(&attributes, ""),
        &four_octet(),
        Outcome::AfiSafiDisable(Family::IPV6_UNICAST),
        code::UPDATE_MESSAGE,
        update_subcode::OPTIONAL_ATTRIBUTE_ERROR,
    );
}

#[test]
fn mp_reach_too_short_to_name_its_family_resets_the_session() {
    decode_err(
        &update_bytes("80 0e 02 0002", ""),
        &four_octet(),
        Outcome::SessionReset,
        code::UPDATE_MESSAGE,
        update_subcode::OPTIONAL_ATTRIBUTE_ERROR,
    );
}

#[test]
fn mp_unreach_with_a_truncated_prefix_disables_the_family() {
    decode_err(
        &update_bytes("80 0f 05 0002 01 30 20", ""),
        &four_octet(),
        Outcome::AfiSafiDisable(Family::IPV6_UNICAST),
        code::UPDATE_MESSAGE,
        update_subcode::OPTIONAL_ATTRIBUTE_ERROR,
    );
}

#[test]
fn mp_reach_of_a_family_tern_does_not_speak_is_ignored() {
    // L2VPN EVPN (25/70): not negotiated, not understood, so the attribute is dropped.
    let attributes = format!("80 0e 0a 0019 46 04 0a000001 00 00 {ORIGIN} {AS_PATH} {NEXT_HOP}");
    let update = decode_ok(&update_bytes(&attributes, NLRI), &four_octet());
    assert_single_error(
        &update,
        Outcome::AttributeDiscard,
        update_subcode::OPTIONAL_ATTRIBUTE_ERROR,
    );
    assert!(update.mp_reach.is_none());
    assert_eq!(update.nlri.len(), 1);
}

#[test]
fn mp_reach_appearing_twice_resets_the_session() {
    let reach = "80 0e 16 0002 01 10 20010db8000000000000000000000001 00 00";
    decode_err(
        &update_bytes(&format!("{reach} {reach} {ORIGIN} {AS_PATH}"), ""),
        &four_octet(),
        Outcome::SessionReset,
        code::UPDATE_MESSAGE,
        update_subcode::MALFORMED_ATTRIBUTE_LIST,
    );
}

#[test]
fn any_other_attribute_appearing_twice_keeps_the_first() {
    let attributes = format!("{ORIGIN} {AS_PATH} {NEXT_HOP} 80 04 04 00000001 80 04 04 00000002");
    let update = decode_ok(&update_bytes(&attributes, NLRI), &four_octet());
    assert_single_error(
        &update,
        Outcome::AttributeDiscard,
        update_subcode::MALFORMED_ATTRIBUTE_LIST,
    );
    assert_eq!(update.attributes.med, Some(1));
}

#[test]
fn malformed_as4_path_is_discarded_and_as_path_kept() {
    let attributes = "40 01 01 00 40 02 04 02 01 5ba0 40 03 04 c0000201 c0 11 03 02 01 00";
    let update = decode_ok(&update_bytes(attributes, NLRI), &Context::default());
    assert_single_error(
        &update,
        Outcome::AttributeDiscard,
        update_subcode::OPTIONAL_ATTRIBUTE_ERROR,
    );
    assert_eq!(update.attributes.as_path, Some(AsPath::sequence([23456])));
}

#[test]
fn as4_path_with_a_confederation_segment_is_discarded() {
    let attributes = "40 01 01 00 40 02 04 02 01 5ba0 40 03 04 c0000201 c0 11 06 03 01 fa56ea01";
    let update = decode_ok(&update_bytes(attributes, NLRI), &Context::default());
    assert_single_error(
        &update,
        Outcome::AttributeDiscard,
        update_subcode::OPTIONAL_ATTRIBUTE_ERROR,
    );
    assert_eq!(update.attributes.as_path, Some(AsPath::sequence([23456])));
}

#[test]
fn as4_aggregator_with_a_wrong_length_is_discarded() {
    let attributes = "40 01 01 00 40 02 04 02 01 5ba0 40 03 04 c0000201
                      c0 07 06 5ba0 0a000001 c0 12 06 fa56 0a000001";
    let update = decode_ok(&update_bytes(attributes, NLRI), &Context::default());
    assert_single_error(
        &update,
        Outcome::AttributeDiscard,
        update_subcode::ATTRIBUTE_LENGTH_ERROR,
    );
    let aggregator = update.attributes.aggregator.unwrap();
    assert_eq!(aggregator.asn, 23456, "AGGREGATOR is kept as sent");
}

#[test]
fn as4_path_is_ignored_when_aggregator_was_set_by_a_two_octet_speaker() {
    // RFC 6793 section 4.2.3: AGGREGATOR with a real AS means AS4_* are stale.
    let attributes = "40 01 01 00 40 02 04 02 01 5ba0 40 03 04 c0000201
                      c0 07 06 fde9 0a000001 c0 11 06 02 01 fa56ea01 c0 12 08 fa56ea01 0a000001";
    let update = decode_ok(&update_bytes(attributes, NLRI), &Context::default());
    assert!(update.errors.is_empty());
    assert_eq!(update.attributes.as_path, Some(AsPath::sequence([23456])));
    assert_eq!(update.attributes.aggregator.unwrap().asn, 65001);
}

#[test]
fn as4_path_longer_than_as_path_is_ignored() {
    let attributes = "40 01 01 00 40 02 04 02 01 5ba0 40 03 04 c0000201
                      c0 11 0a 02 02 fa56ea01 fa56ea02";
    let update = decode_ok(&update_bytes(attributes, NLRI), &Context::default());
    assert_eq!(update.attributes.as_path, Some(AsPath::sequence([23456])));
}

#[test]
fn as4_path_from_a_four_octet_speaker_is_dropped() {
    let attributes = format!("{ORIGIN} {AS_PATH} {NEXT_HOP} c0 11 06 02 01 fa56ea01");
    let update = decode_ok(&update_bytes(&attributes, NLRI), &four_octet());
    assert!(update.errors.is_empty());
    assert_eq!(update.attributes.as_path, Some(AsPath::sequence([65001])));
}

#[test]
fn wrong_flags_on_a_well_known_attribute_are_treat_as_withdraw() {
    // ORIGIN marked optional.
    treat_as_withdraw_case(
        &format!("c0 01 01 00 {AS_PATH} {NEXT_HOP}"),
        update_subcode::ATTRIBUTE_FLAGS_ERROR,
    );
}

#[test]
fn wrong_flags_on_mp_reach_disable_the_family() {
    let attributes =
        format!("c0 0e 16 0002 01 10 20010db8000000000000000000000001 00 00 {ORIGIN} {AS_PATH}");
    decode_err(
        &update_bytes(&attributes, ""),
        &four_octet(),
        Outcome::AfiSafiDisable(Family::IPV6_UNICAST),
        code::UPDATE_MESSAGE,
        update_subcode::ATTRIBUTE_FLAGS_ERROR,
    );
}

#[test]
fn an_attribute_overrunning_the_attribute_field_is_treat_as_withdraw_and_nlri_still_found() {
    // The MED claims 9 octets but only 4 remain in the attribute field.
    let update = decode_ok(
        &update_bytes(
            &format!("{ORIGIN} {AS_PATH} {NEXT_HOP} 80 04 09 00000064"),
            NLRI,
        ),
        &four_octet(),
    );
    assert_single_error(
        &update,
        Outcome::TreatAsWithdraw,
        update_subcode::MALFORMED_ATTRIBUTE_LIST,
    );
    assert_eq!(update.nlri, vec![Nlri::new("10.1.0.0/24".parse().unwrap())]);
}

#[test]
fn an_attribute_header_cut_short_is_treat_as_withdraw() {
    treat_as_withdraw_case(
        &format!("{ORIGIN} {AS_PATH} {NEXT_HOP} 80"),
        update_subcode::MALFORMED_ATTRIBUTE_LIST,
    );
}

#[test]
fn total_attribute_length_overrunning_the_message_resets_the_session() {
    decode_err(
        &message(2, "0000 0010 40 01 01 00"),
        &four_octet(),
        Outcome::SessionReset,
        code::UPDATE_MESSAGE,
        update_subcode::MALFORMED_ATTRIBUTE_LIST,
    );
}

#[test]
fn withdrawn_length_overrunning_the_message_resets_the_session() {
    decode_err(
        &message(2, "0009 18 0a0100 0000"),
        &four_octet(),
        Outcome::SessionReset,
        code::UPDATE_MESSAGE,
        update_subcode::MALFORMED_ATTRIBUTE_LIST,
    );
}

#[test]
fn an_nlri_prefix_longer_than_32_bits_resets_the_session() {
    decode_err(
        &update_bytes(&format!("{ORIGIN} {AS_PATH} {NEXT_HOP}"), "21 0a010000 00"),
        &four_octet(),
        Outcome::SessionReset,
        code::UPDATE_MESSAGE,
        update_subcode::INVALID_NETWORK_FIELD,
    );
}

#[test]
fn a_truncated_nlri_prefix_resets_the_session() {
    decode_err(
        &update_bytes(&format!("{ORIGIN} {AS_PATH} {NEXT_HOP}"), "18 0a01"),
        &four_octet(),
        Outcome::SessionReset,
        code::UPDATE_MESSAGE,
        update_subcode::INVALID_NETWORK_FIELD,
    );
}

#[test]
fn a_truncated_withdrawn_prefix_resets_the_session() {
    decode_err(
        &message(2, "0003 18 0a01 0000"),
        &four_octet(),
        Outcome::SessionReset,
        code::UPDATE_MESSAGE,
        update_subcode::INVALID_NETWORK_FIELD,
    );
}

#[test]
fn a_missing_well_known_attribute_is_treat_as_withdraw_naming_it() {
    let cases = [
        (format!("{AS_PATH} {NEXT_HOP}"), 1u8),
        (format!("{ORIGIN} {NEXT_HOP}"), 2),
        (format!("{ORIGIN} {AS_PATH}"), 3),
    ];
    for (attributes, missing) in cases {
        let update =
            treat_as_withdraw_case(&attributes, update_subcode::MISSING_WELL_KNOWN_ATTRIBUTE);
        assert_eq!(update.errors[0].notification.data, vec![missing]);
    }
}

#[test]
fn an_update_that_only_withdraws_needs_no_attributes() {
    let update = decode_ok(&message(2, "0004 18 0a0100 0000"), &four_octet());
    assert!(update.errors.is_empty());
    assert_eq!(update.withdrawn.len(), 1);
}

#[test]
fn ipv6_routes_need_no_next_hop_attribute() {
    let attributes = format!(
        "80 0e 1c 0002 01 10 20010db8000000000000000000000001 00 30 20010db80001 {ORIGIN} {AS_PATH}"
    );
    let update = decode_ok(&update_bytes(&attributes, ""), &four_octet());
    assert!(update.errors.is_empty(), "{:?}", update.errors);
}

#[test]
fn an_unrecognized_well_known_attribute_resets_the_session() {
    let error = decode_err(
        &update_bytes(&format!("{ORIGIN} {AS_PATH} {NEXT_HOP} 40 63 01 00"), NLRI),
        &four_octet(),
        Outcome::SessionReset,
        code::UPDATE_MESSAGE,
        update_subcode::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
    );
    assert_eq!(error.notification.data, hex("40 63 01 00"));
}

#[test]
fn an_unknown_optional_non_transitive_attribute_is_dropped_silently() {
    let update = decode_ok(
        &update_bytes(
            &format!("{ORIGIN} {AS_PATH} {NEXT_HOP} 80 63 02 abcd"),
            NLRI,
        ),
        &four_octet(),
    );
    assert!(update.errors.is_empty());
    assert!(update.attributes.unknown.is_empty());
}

#[test]
fn an_unknown_optional_transitive_attribute_is_kept_with_the_partial_bit() {
    let update = decode_ok(
        &update_bytes(
            &format!("{ORIGIN} {AS_PATH} {NEXT_HOP} c0 63 02 abcd"),
            NLRI,
        ),
        &four_octet(),
    );
    assert!(update.errors.is_empty());
    assert_eq!(
        update.attributes.unknown,
        vec![RawAttribute {
            flags: 0xe0,
            type_code: 0x63,
            value: vec![0xab, 0xcd]
        }]
    );
    // Passed on, it carries the partial bit.
    let encoded = Message::Update(update).to_bytes(&four_octet()).unwrap();
    assert!(encoded.windows(5).any(|w| w == hex("e0 63 02 abcd")));
}

#[test]
fn the_strongest_of_several_outcomes_wins() {
    // ATOMIC_AGGREGATE with a value (discard) and a bad COMMUNITIES (treat-as-withdraw).
    let attributes = format!("{ORIGIN} {AS_PATH} {NEXT_HOP} 40 06 01 00 c0 08 03 000000");
    let update = decode_ok(&update_bytes(&attributes, NLRI), &four_octet());
    assert_eq!(update.errors.len(), 2);
    assert_eq!(update.outcome(), Some(Outcome::TreatAsWithdraw));
    assert!(update.treat_as_withdraw());

    // The same with a malformed MP_REACH_NLRI: the session-level outcome is returned.
    let attributes =
        format!("40 06 01 00 c0 08 03 000000 80 0e 0a 0002 01 05 2001db8000 00 {ORIGIN} {AS_PATH}");
    decode_err(
        &update_bytes(&attributes, ""),
        &four_octet(),
        Outcome::AfiSafiDisable(Family::IPV6_UNICAST),
        code::UPDATE_MESSAGE,
        update_subcode::OPTIONAL_ATTRIBUTE_ERROR,
    );
    assert!(Outcome::SessionReset > Outcome::AfiSafiDisable(Family::IPV4_UNICAST));
    assert!(Outcome::AfiSafiDisable(Family::IPV6_UNICAST) > Outcome::TreatAsWithdraw);
    assert!(Outcome::TreatAsWithdraw > Outcome::AttributeDiscard);
}

#[test]
fn a_header_without_the_marker_is_connection_not_synchronized() {
    let mut bytes = message(4, "");
    bytes[3] = 0;
    decode_err(
        &bytes,
        &Context::default(),
        Outcome::SessionReset,
        code::MESSAGE_HEADER,
        header_subcode::CONNECTION_NOT_SYNCHRONIZED,
    );
}

#[test]
fn a_length_out_of_bounds_for_the_type_is_bad_message_length_with_the_length_as_data() {
    let mut short = vec![0xff; 16];
    short.extend_from_slice(&[0x00, 0x12, 0x04]);
    let error = decode_err(
        &short,
        &Context::default(),
        Outcome::SessionReset,
        code::MESSAGE_HEADER,
        header_subcode::BAD_MESSAGE_LENGTH,
    );
    assert_eq!(error.notification.data, vec![0x00, 0x12]);
    // A KEEPALIVE with a body, and an OPEN of 4097 octets even with extended messages.
    decode_err(
        &message(4, "00"),
        &Context::default(),
        Outcome::SessionReset,
        code::MESSAGE_HEADER,
        header_subcode::BAD_MESSAGE_LENGTH,
    );
    let big_open = message(1, &"00".repeat(MAX_MESSAGE_LEN - 18));
    let extended = Context {
        extended_messages: true,
        ..Context::default()
    };
    decode_err(
        &big_open,
        &extended,
        Outcome::SessionReset,
        code::MESSAGE_HEADER,
        header_subcode::BAD_MESSAGE_LENGTH,
    );
}

#[test]
fn an_unknown_message_type_is_bad_message_type_with_the_type_as_data() {
    let error = decode_err(
        &message(9, ""),
        &Context::default(),
        Outcome::SessionReset,
        code::MESSAGE_HEADER,
        header_subcode::BAD_MESSAGE_TYPE,
    );
    assert_eq!(error.notification.data, vec![9]);
}

#[test]
fn framing_waits_for_the_whole_message() {
    let bytes = message(4, "");
    assert_eq!(frame(&bytes[..10], &Context::default()), Ok(None));
    let mut two = bytes.clone();
    two.extend_from_slice(&bytes);
    let header = frame(&two, &Context::default()).unwrap().unwrap();
    assert_eq!(header.length, 19);
    let update = message(2, "0000 0000");
    assert_eq!(frame(&update[..20], &Context::default()), Ok(None));
}

#[test]
fn open_errors_carry_their_own_subcodes() {
    let cases = [
        (
            "03 fde9 005a 0a000001 00",
            open_subcode::UNSUPPORTED_VERSION_NUMBER,
        ),
        (
            "04 fde9 0001 0a000001 00",
            open_subcode::UNACCEPTABLE_HOLD_TIME,
        ),
        (
            "04 fde9 0002 0a000001 00",
            open_subcode::UNACCEPTABLE_HOLD_TIME,
        ),
        ("04 fde9 005a 00000000 00", open_subcode::BAD_BGP_IDENTIFIER),
        (
            "04 fde9 005a 0a000001 04 01 02 0000",
            open_subcode::UNSUPPORTED_OPTIONAL_PARAMETER,
        ),
        (
            "04 fde9 005a 0a000001 07 02 05 01 03 000100",
            open_subcode::UNSPECIFIC,
        ),
        (
            "04 fde9 005a 0a000001 08 02 06 41 04 0000fd",
            open_subcode::UNSPECIFIC,
        ),
        (
            "04 fde9 005a 0a000001 05 02 03 02 00",
            open_subcode::UNSPECIFIC,
        ),
    ];
    for (body, subcode) in cases {
        let error = decode_err(
            &message(1, body),
            &Context::default(),
            Outcome::SessionReset,
            code::OPEN_MESSAGE,
            subcode,
        );
        if subcode == open_subcode::UNSUPPORTED_VERSION_NUMBER {
            assert_eq!(
                error.notification.data,
                vec![0, 4],
                "data is the version we support"
            );
        }
    }
}

#[test]
fn a_hold_time_of_zero_or_three_is_accepted() {
    for hold in ["0000", "0003"] {
        let bytes = message(1, &format!("04 fde9 {hold} 0a000001 00"));
        assert!(Message::decode(&bytes, &Context::default()).is_ok());
    }
}

#[test]
fn an_unknown_capability_is_kept_not_refused() {
    let bytes = message(1, "04 fde9 005a 0a000001 06 02 04 fe 02 abcd");
    let Message::Open(open) = Message::decode(&bytes, &Context::default()).unwrap() else {
        panic!("not an OPEN")
    };
    assert_eq!(
        open.capabilities,
        vec![Capability::Unknown {
            code: 0xfe,
            value: vec![0xab, 0xcd]
        }]
    );
}

#[test]
fn a_route_refresh_of_the_wrong_length_is_a_route_refresh_message_error() {
    let bytes = message(5, "0001 01 01 00");
    let error = decode_err(
        &bytes,
        &Context::default(),
        Outcome::SessionReset,
        code::ROUTE_REFRESH,
        route_refresh_subcode::INVALID_MESSAGE_LENGTH,
    );
    assert_eq!(error.notification.data, bytes, "data is the whole message");
}

#[test]
fn a_malformed_shutdown_communication_is_ignored() {
    let cases = [vec![0x05, b'a'], vec![0x01, 0xff], vec![0x00]];
    for data in cases {
        let notification =
            Notification::new(code::CEASE, cease_subcode::ADMINISTRATIVE_SHUTDOWN, data);
        assert_eq!(notification.shutdown_message(), None);
    }
    let long = "é".repeat(200);
    let cut = Notification::shutdown(cease_subcode::ADMINISTRATIVE_RESET, &long);
    assert_eq!(
        cut.shutdown_message().map(str::len),
        Some(254),
        "cut at a character boundary"
    );
}

#[test]
fn next_hop_is_kept_exactly() {
    let update = decode_ok(
        &update_bytes(&format!("{ORIGIN} {AS_PATH} {NEXT_HOP}"), NLRI),
        &four_octet(),
    );
    assert_eq!(
        update.attributes.next_hop,
        Some(Ipv4Addr::new(192, 0, 2, 1))
    );
}

#[test]
fn as_0_in_as_path_is_treat_as_withdraw_per_rfc_7607() {
    treat_as_withdraw_case(
        &format!("{ORIGIN} 40 02 0a 02 02 0000fde9 00000000 {NEXT_HOP}"),
        update_subcode::MALFORMED_AS_PATH,
    );
}

#[test]
fn as_0_in_aggregator_or_as4_path_is_discarded_per_rfc_7607() {
    let attributes = format!("{ORIGIN} {AS_PATH} {NEXT_HOP} c0 07 08 00000000 0a000001");
    let update = decode_ok(&update_bytes(&attributes, NLRI), &four_octet());
    assert_single_error(
        &update,
        Outcome::AttributeDiscard,
        update_subcode::OPTIONAL_ATTRIBUTE_ERROR,
    );
    assert_eq!(update.attributes.aggregator, None);
    let two_octet = "40 01 01 00 40 02 04 02 01 5ba0 40 03 04 c0000201 c0 11 06 02 01 00000000";
    let update = decode_ok(&update_bytes(two_octet, NLRI), &Context::default());
    assert_single_error(
        &update,
        Outcome::AttributeDiscard,
        update_subcode::OPTIONAL_ATTRIBUTE_ERROR,
    );
}

#[test]
fn an_open_from_as_0_is_bad_peer_as_per_rfc_7607() {
    decode_err(
        &message(1, "04 0000 005a 0a000001 00"),
        &Context::default(),
        Outcome::SessionReset,
        code::OPEN_MESSAGE,
        open_subcode::BAD_PEER_AS,
    );
}

/// An external session with 4-octet AS numbers.
fn external() -> Context {
    Context {
        external: true,
        ..four_octet()
    }
}

/// AS_CONFED_SEQUENCE (65002) then AS_SEQUENCE (65001).
const CONFED_AS_PATH: &str = "40 02 0c 03 01 0000fdea 02 01 0000fde9";

#[test]
fn as_path_with_a_confederation_segment_from_an_external_peer_is_treat_as_withdraw() {
    // RFC 5065 section 5, RFC 7606 section 7.2: tern forms no confederation, so every external
    // peer is outside it.
    let bytes = update_bytes(&format!("{ORIGIN} {CONFED_AS_PATH} {NEXT_HOP}"), NLRI);
    let update = decode_ok(&bytes, &external());
    assert_single_error(
        &update,
        Outcome::TreatAsWithdraw,
        update_subcode::MALFORMED_AS_PATH,
    );
    assert!(update.treat_as_withdraw());
    assert_eq!(
        update.nlri.len(),
        1,
        "the routes to withdraw are still known"
    );
    // AS_CONFED_SET (type 4) as well.
    let set = update_bytes(
        &format!("{ORIGIN} 40 02 0c 04 01 0000fdea 02 01 0000fde9 {NEXT_HOP}"),
        NLRI,
    );
    assert!(decode_ok(&set, &external()).treat_as_withdraw());
}

#[test]
fn as_path_with_a_confederation_segment_from_an_internal_peer_is_kept() {
    let bytes = update_bytes(&format!("{ORIGIN} {CONFED_AS_PATH} {NEXT_HOP}"), NLRI);
    let update = decode_ok(&bytes, &four_octet());
    assert!(update.errors.is_empty(), "{:?}", update.errors);
}

#[test]
fn a_treat_as_withdraw_error_in_an_update_without_reachable_nlri_resets_the_session() {
    // RFC 7606 section 5.2: path attributes, no reachable NLRI, an error stronger than discard.
    let error = decode_err(
        &update_bytes(&format!("40 01 02 0000 {AS_PATH} {NEXT_HOP}"), ""),
        &four_octet(),
        Outcome::SessionReset,
        code::UPDATE_MESSAGE,
        update_subcode::ATTRIBUTE_LENGTH_ERROR,
    );
    assert_eq!(error.notification.data, hex("40 01 02 0000"));
    // Withdrawn routes are no reachable NLRI: the same holds beside them.
    let attributes = hex(&format!("{ORIGIN} {CONFED_AS_PATH} {NEXT_HOP}"));
    let body = format!(
        "0004 18 0a0100 {:04x} {}",
        attributes.len(),
        attributes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    decode_err(
        &message(2, &body),
        &external(),
        Outcome::SessionReset,
        code::UPDATE_MESSAGE,
        update_subcode::MALFORMED_AS_PATH,
    );
}

#[test]
fn an_attribute_discard_error_in_an_update_without_reachable_nlri_keeps_the_session() {
    let update = decode_ok(
        &update_bytes(&format!("{ORIGIN} {AS_PATH} {NEXT_HOP} 40 06 01 00"), ""),
        &four_octet(),
    );
    assert_single_error(
        &update,
        Outcome::AttributeDiscard,
        update_subcode::ATTRIBUTE_LENGTH_ERROR,
    );
}
