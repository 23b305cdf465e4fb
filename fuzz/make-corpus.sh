#!/usr/bin/env bash
# Writes the seed corpus of the fuzz targets into fuzz/corpus/<target>/seed-*.
#
# Seeds come from the captured FRR and BIRD messages in bgp/tests/vectors/*.txt (each prefixed
# with the context octet their file's "# context:" line gives) and from a handful of hand-written
# messages below, taken from the layouts in bgp/tests/golden.rs. Every seed starts with the octet
# that chooses the session context (see fuzz/src/lib.rs):
#   bit 0 four-octet AS, bit 1 extended messages, bit 2 ADD-PATH IPv4, bit 3 ADD-PATH IPv6,
#   bit 4 external peer.
# The message targets get the whole message, the per-type targets only its body, frame gets
# streams of consecutive messages. Identical seeds are written once. Needs bash, xxd and sha1sum.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
vectors="$here/../bgp/tests/vectors"
corpus="$here/corpus"
targets=(frame message open update notification route_refresh builder ipip_inbound ipip_outbound segmentation)

for target in "${targets[@]}"; do
    mkdir -p "$corpus/$target"
    rm -f "$corpus/$target"/seed-*
done

declare -A written=()

# seed TARGET NAME HEX: writes the octets HEX (whitespace allowed) unless the target has them.
seed() {
    local target=$1 name=$2 hex=${3//[[:space:]]/}
    local sum
    sum=$(printf '%s' "$hex" | sha1sum | cut -c1-40)
    [[ -n ${written[$target/$sum]:-} ]] && return 0
    written[$target/$sum]=1
    printf '%s' "$hex" | xxd -r -p >"$corpus/$target/seed-$name"
}

# message_hex TYPE BODYHEX: the whole message, header included.
message_hex() {
    local body=${2//[[:space:]]/}
    printf 'ffffffffffffffffffffffffffffffff%04x%02x%s' $((19 + ${#body} / 2)) "$1" "$body"
}

# keyword_target KEYWORD: the per-type target of a message keyword, or nothing.
keyword_target() {
    case $1 in
        open | 1) echo open ;;
        update | 2) echo update ;;
        notification | 3) echo notification ;;
        route-refresh | 5) echo route_refresh ;;
    esac
}

# A whole message as every message target sees it.
message_seeds() {
    local name=$1 context=$2 hex=$3
    local target
    seed message "$name" "$context$hex"
    target=$(keyword_target $((16#${hex:36:2})))
    if [[ -n $target ]]; then
        seed "$target" "$name" "$context${hex:38}"
    fi
}

# Context octet of a vector file's "# context:" line.
context_octet() {
    local line=$1 octet=0
    [[ $line == *four_octet_as=yes* ]] && octet=$((octet | 1))
    [[ $line == *extended_messages=yes* ]] && octet=$((octet | 2))
    [[ $line =~ add_path=[^[:space:]]*ipv4/unicast ]] && octet=$((octet | 4))
    [[ $line =~ add_path=[^[:space:]]*ipv6/unicast ]] && octet=$((octet | 8))
    [[ $line == *external=yes* ]] && octet=$((octet | 16))
    printf '%02x' "$octet"
}

shopt -s nullglob
for file in "$vectors"/*.txt; do
    stem=$(basename "$file" .txt)
    context=00
    index=0
    stream=""
    part=0
    while IFS= read -r line; do
        if [[ $line == "# context:"* ]]; then
            context=$(context_octet "$line")
            continue
        fi
        [[ -z $line || $line == "#"* ]] && continue
        read -r keyword hex <<<"$line"
        index=$((index + 1))
        message_seeds "$stem-$(printf '%03d' "$index")-$keyword" "$context" "$hex"
        # frame: runs of consecutive messages of at most 4096 octets (a longer one alone).
        if ((${#stream} > 0 && ${#stream} + ${#hex} > 8192)); then
            part=$((part + 1))
            seed frame "$stem-$part" "$context$stream"
            stream=""
        fi
        stream+=$hex
    done <"$file"
    if ((${#stream} > 0)); then
        part=$((part + 1))
        seed frame "$stem-$part" "$context$stream"
        # The same stream cut in the middle of its last message.
        seed frame "$stem-$part-cut" "$context${stream:0:$((${#stream} - 6))}"
    fi
done

# Hand-written messages: NAME CONTEXT TYPE BODY.
hand() {
    local hex
    hex=$(message_hex "$3" "$4")
    message_seeds "$1" "$2" "$hex"
    seed frame "$1" "$2$hex"
}

big_capability=$(printf 'ab%.0s' $(seq 250))
hand keepalive 00 4 ""
hand open-every-capability 00 1 "
    04 fde9 005a 0a000001 48 02 46
    01 04 0001 00 01  01 04 0002 00 01  02 00  46 00  41 04 0000fde9
    40 0a c078 0001 01 80 0002 01 00  47 07 0001 01 80 000e10  45 04 0001 01 03
    06 00  05 06 0001 0001 0002  49 07 05 6e6f646531 00  80 00"
hand open-rfc9072 00 1 "04 5ba0 00b4 0a000002 ff ff 0105 02 0102 41 04 fa56ea01 fe fa $big_capability"
hand notification-shutdown 00 3 "06 02 0b 6d61696e74656e616e6365"
hand notification-data 00 3 "01 02 1234"
hand route-refresh-request 00 5 "0001 00 01"
hand route-refresh-borr 00 5 "0002 01 01"
hand update-every-ipv4-attribute 01 2 "
    0004 18 0a0203  0071
    40 01 01 00  40 02 0a 02 02 0000fde9 fa56ea01  40 03 04 c0000201  80 04 04 00000064
    40 05 04 000000c8  40 06 00  c0 07 08 fa56ea01 0a000009  c0 08 08 fde90064 ffffff01
    80 09 04 0a000005  80 0a 08 0a000007 0a000008  c0 10 08 0002fde900000064
    c0 20 0c 0000fde9 00000001 00000002  e0 f0 03 010203
    10 0a01  18 c0a801  00"
hand update-as4-path 00 2 "
    0000 003b  40 01 01 02  40 02 08 02 03 fde9 5ba0 fdea  40 03 04 c0000201
    c0 07 06 5ba0 0a000009  c0 11 0e 02 03 0000fde9 fa56ea01 0000fdea
    c0 12 08 fa56ea01 0a000009  18 0a0900"
hand update-confederation 00 2 "
    0000 001c  40 01 01 00  40 02 0e 03 01 fdf2 02 01 fde9 01 02 fe4c fe4d
    40 03 04 c0000201  18 0a0901"
hand update-ipv6 01 2 "
    0000 004a
    80 0e 2d 0002 01 20 20010db8000000000000000000000001 fe800000000000000000000000000001 00
       30 20010db80001 00
    80 0f 0a 0002 01 30 20010db80002  40 01 01 00  40 02 06 02 01 0000fde9"
hand update-ipv4-over-ipv6 01 2 "
    0000 0023  80 0e 19 0001 01 10 20010db8000000000000000000000001 00 18 0a0300
    40 01 01 00  40 02 00"
hand update-add-path 05 2 "
    0008 00000003 18 0a0500  000e 40 01 01 00  40 02 00  40 03 04 c0000201
    00000001 18 0a0400 00000002 18 0a0400"
hand update-end-of-rib-ipv4 01 2 "0000 0000"
hand update-end-of-rib-ipv6 01 2 "0000 0006 80 0f 03 0002 01"
hand update-extended-length 13 2 "
    0000 0016  50 01 0001 00  50 02 0006 02 01 0000fde9  40 03 04 c0000201  18 0a0000"

# builder: context, three choice octets, attribute values, then routes (fuzz_targets/builder.rs).
# IPv4 and IPv6, announced and withdrawn, 4-octet AS, no ADD-PATH.
seed builder plain "01  00 02 00  0000fde9 fa56ea01  00000000  c0000201
    20010db8000000000000000000000001
    00 18 0a0000  01 30 20010db80001  04 10 0a01  05 40 20010db800000001"
# Every attribute, ADD-PATH both ways, extended messages, copies of each route.
seed builder every-attribute "0f  bd f3 75
    fdf2  0000fde9 fa56ea01 0000fdea  0000fe4c 0000fe4d  0a0a0a0a  00000064  000000c8
    fa56ea01 0a000009  fde90064 ffffff01  0a000005  0a000007 0a000008
    0002fde900000064  0000fde9 00000001 00000002  61 01020304050607
    20010db8000000000000000000000001 fe800000000000000000000000000001
    20010db8000000000000000000000002 fe800000000000000000000000000002
    fa 18 0a0101 00000001  fb 80 20010db8000000000000000000000099 00000002
    06 1f 0a0203fe 00000003  ff 07 fe 00000004  00 00  01 00"
# Toward a 2-octet speaker: AS numbers above 65535 need AS4_PATH and AS4_AGGREGATOR.
seed builder two-octet-as "00  20 33 00  fa56ea01 00005ba0 0000fde9  0000fe4c fa56ea02
    00000000  fa56ea03 0a000009  c0000201  20010db8000000000000000000000001
    f8 18 0a0000  f9 30 20010db80001  fc 20 c0a80001"
# External peer, 4096-octet messages, many routes to split across messages.
seed builder many-routes "11  00 01 00  0000fde9  00000000  c0000201
    20010db8000000000000000000000001
    $(for i in $(seq 0 60); do printf 'f8 18 0a%02x00 f9 40 20010db8%04x0000 fc 20 0a%02x0001 fd 80 20010db8%028x ' "$i" "$i" "$i" "$i"; done)"

# The userspace IP-in-IP data path (tern_agent::tunnel::userspace::fuzzing, whose fixed table has
# node 192.168.77.2 with 10.244.2.0/26, node .3 with 10.244.3.0/26 and 10.244.2.7/32, and this
# node's 10.244.1.0/26): ipip_inbound gets a steering octet and a packet from the wire,
# ipip_outbound two octets of path MTU and a packet from the device, segmentation two octets of
# segment size and a TCP packet (a super-packet of 1000 octets with FIN and PSH).
seed ipip_inbound echo-from-node "0f450000301234400040040d42c0a84d02c0a84d014500001c1234400040010fc40af402010af401010800f7ff00000000"
seed ipip_inbound ce-over-ect "0f4503003c1234400040040d33c0a84d02c0a84d01450200281234400040060fb10af402010af401010000000000000000000000000000000000000000"
seed ipip_inbound borrowed-address "03450000301234400040040d41c0a84d03c0a84d014500001c1234400040110fa60af402070af401090000000000000000"
seed ipip_outbound tcp-df "05644500008c1234400040060f4f0af401010af4020104d20050000003e8000000015018fffff1a60000000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60616263"
seed ipip_outbound echo "05644500001c1234400040010fc40af401010af402010800f7ff00000000"
seed segmentation small-mtu "0064450000f01234400040060eeb0af402010af4010104d20050000003e8000000015018ffffb9d90000000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7"
seed segmentation super-packet "012c450004101234400040060bcb0af402010af4010104d20050000003e8000000015019ffff4d08000000070e151c23
    2a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9e0e7eef5fc030a11181f262d343b424950575e656c73
    7a81888f969da4abb2b9c0c7ced5dce3eaf1f8ff060d141b222930373e454c535a61686f767d848b9299a0a7aeb5bcc3
    cad1d8dfe6edf4fb020910171e252c333a41484f565d646b727980878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c13
    1a21282f363d444b525960676e757c838a91989fa6adb4bbc2c9d0d7dee5ecf3fa01080f161d242b323940474e555c63
    6a71787f868d949ba2a9b0b7bec5ccd3dae1e8eff6fd040b121920272e353c434a51585f666d747b828990979ea5acb3
    bac1c8cfd6dde4ebf2f900070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9e0e7eef5fc03
    0a11181f262d343b424950575e656c737a81888f969da4abb2b9c0c7ced5dce3eaf1f8ff060d141b222930373e454c53
    5a61686f767d848b9299a0a7aeb5bcc3cad1d8dfe6edf4fb020910171e252c333a41484f565d646b727980878e959ca3
    aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d444b525960676e757c838a91989fa6adb4bbc2c9d0d7dee5ecf3
    fa01080f161d242b323940474e555c636a71787f868d949ba2a9b0b7bec5ccd3dae1e8eff6fd040b121920272e353c43
    4a51585f666d747b828990979ea5acb3bac1c8cfd6dde4ebf2f900070e151c232a31383f464d545b626970777e858c93
    9aa1a8afb6bdc4cbd2d9e0e7eef5fc030a11181f262d343b424950575e656c737a81888f969da4abb2b9c0c7ced5dce3
    eaf1f8ff060d141b222930373e454c535a61686f767d848b9299a0a7aeb5bcc3cad1d8dfe6edf4fb020910171e252c33
    3a41484f565d646b727980878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d444b525960676e757c83
    8a91989fa6adb4bbc2c9d0d7dee5ecf3fa01080f161d242b323940474e555c636a71787f868d949ba2a9b0b7bec5ccd3
    dae1e8eff6fd040b121920272e353c434a51585f666d747b828990979ea5acb3bac1c8cfd6dde4ebf2f900070e151c23
    2a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9e0e7eef5fc030a11181f262d343b424950575e656c73
    7a81888f969da4abb2b9c0c7ced5dce3eaf1f8ff060d141b222930373e454c535a61686f767d848b9299a0a7aeb5bcc3
    cad1d8dfe6edf4fb020910171e252c333a41484f565d646b727980878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c13
    1a21282f363d444b525960676e757c838a91989fa6adb4bbc2c9d0d7dee5ecf3fa01080f161d242b323940474e555c63
    6a71787f868d949ba2a9b0b7bec5ccd3dae1e8eff6fd040b121920272e353c434a51"

for target in "${targets[@]}"; do
    printf '%-14s %3d seeds\n' "$target" "$(find "$corpus/$target" -name 'seed-*' | wc -l)"
done
