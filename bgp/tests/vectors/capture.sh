#!/usr/bin/env bash
# Capture real BGP sessions between FRR and BIRD (Debian packages frr, bird2) as codec test vectors.
#
# Run as root:   sudo ./capture.sh            (needs: frr bird2 tcpdump python3, iproute2)
#
# Everything happens inside network namespaces named tern-cap-*, joined by veth pairs that are
# created directly inside those namespaces; the host's own interfaces, addresses and routes are
# never touched. Only processes started by this script (recorded PIDs / processes living inside
# its own namespaces) are stopped. Teardown runs on every exit path (trap EXIT).
#
# Topology (all addresses exist only inside the namespaces):
#
#   tern-cap-frr2 (FRR, AS4200000001)            tern-cap-frr1 (FRR, AS65001)        tern-cap-bird1 (BIRD)
#   d-frr2 10.255.4.2/24 ==== link D ==== d-frr1 10.255.4.1/24
#                                         a-frr  10.255.1.1/24      ==== link A ====  a-bird 10.255.1.2/24
#                                                fd00:ffff::1:1/112                          fd00:ffff::1:2/112
#                                         c-frr  10.255.3.1/24      ==== link C ====  c-bird 10.255.3.2/24
#                                                                                     r-bird fd00:ffff::2:2/112
#                                                                                        || link R
#                                                     tern-cap-bird2 (BIRD, AS65001)  r-client fd00:ffff::2:1/112
#
# Sessions:
#   a  ebgp     FRR1 AS65001 10.255.1.1  <-> BIRD1 AS65002 10.255.1.2        IPv4 transport, ipv4+ipv6 unicast
#   b  ibgp-v6  FRR1 AS65001 fd00:ffff::1:1 <-> BIRD1 AS65001 fd00:ffff::1:2 IPv6 transport, BIRD is RR, FRR client
#   c  as2      FRR1 AS65001 10.255.3.1 <-> BIRD1 AS65003 10.255.3.2 (BIRD: enable as4 off); FRR1 relays the
#               routes of FRR2 (AS4200000001), so AS_PATH carries AS_TRANS and AS4_PATH the real ASNs
#   d  ebgp-as4 FRR2 AS4200000001 10.255.4.2 <-> FRR1 AS65001 10.255.4.1 (both 4-octet AS)
#   r  ibgp-rr  BIRD2 AS65001 fd00:ffff::2:1 <-> BIRD1 (RR) fd00:ffff::2:2  feeds routes that BIRD1 reflects to FRR1
# tcpdump runs in tern-cap-bird1 on all its interfaces (sessions a, b, c, r; Linux cooked capture) and in
# tern-cap-frr2 on d-frr2 (session d; Ethernet capture).
#
# Output (next to this script): capture.pcap, capture-d.pcap, capture.meta.json and the *.txt vector
# files written by extract.py. Set KEEP_WORK=1 to keep the temporary directory with configs and logs.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$HERE}
DEADLINE_ESTABLISHED=${DEADLINE_ESTABLISHED:-60}

NS_FRR1=tern-cap-frr1
NS_BIRD1=tern-cap-bird1
NS_FRR2=tern-cap-frr2
NS_BIRD2=tern-cap-bird2
ALL_NS=("$NS_FRR1" "$NS_BIRD1" "$NS_FRR2" "$NS_BIRD2")

FRR_BIN=/usr/lib/frr

log() { printf '[capture %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root"
for c in ip tcpdump bird birdc vtysh python3 dpkg-query "$FRR_BIN/bgpd" "$FRR_BIN/zebra"; do
    command -v "$c" >/dev/null 2>&1 || [[ -x $c ]] || die "missing $c (apt-get install -y frr bird2 tcpdump)"
done
for ns in "${ALL_NS[@]}"; do
    if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
        die "namespace $ns already exists (left over from an earlier run?); remove it with: ip netns del $ns"
    fi
done

FRR_DEB=$(dpkg-query -W -f='${Version}' frr)
BIRD_DEB=$(dpkg-query -W -f='${Version}' bird2)
FRR_VER=${FRR_DEB#*:}; FRR_VER=${FRR_VER%%-*}
BIRD_VER=${BIRD_DEB#*:}; BIRD_VER=${BIRD_VER%%-*}
FRR_DESC="FRR $FRR_VER (Debian package frr $FRR_DEB)"
BIRD_DESC="BIRD $BIRD_VER (Debian package bird2 $BIRD_DEB)"
log "$FRR_DESC, $BIRD_DESC"

WORK=$(mktemp -d /tmp/tern-cap.XXXXXX)
chmod 755 "$WORK"
PCAP=$WORK/capture.pcap
PCAP_D=$WORK/capture-d.pcap

CREATED_NS=()
PIDFILES=()       # "name:pidfile:ns"
TCPDUMP_PID=
TCPDUMP_D_PID=

pid_ok() {  # pid expected-comm namespace -> true if that pid is our process
    local pid=$1 comm=$2 ns=$3
    [[ -n $pid && -r /proc/$pid/comm ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]] || return 1
    [[ $(ip netns identify "$pid" 2>/dev/null) == "$ns" ]] || return 1
}

stop_one_tcpdump() {  # pid ns
    if [[ -n $1 ]] && pid_ok "$1" tcpdump "$2"; then
        kill -INT "$1" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
        wait "$1" 2>/dev/null || true
    fi
}
stop_tcpdump() {
    stop_one_tcpdump "$TCPDUMP_PID" "$NS_BIRD1"
    stop_one_tcpdump "$TCPDUMP_D_PID" "$NS_FRR2"
    TCPDUMP_PID= TCPDUMP_D_PID=
}

CLEANED=0
cleanup() {
    local rc=$?
    [[ $CLEANED -eq 1 ]] && return 0
    CLEANED=1
    set +e
    stop_tcpdump
    local entry name pidfile ns pid pids=()
    for entry in "${PIDFILES[@]}"; do
        IFS=: read -r name pidfile ns <<<"$entry"
        [[ -s $pidfile ]] || continue
        pid=$(tr -dc 0-9 <"$pidfile")
        if pid_ok "$pid" "$name" "$ns"; then kill -TERM "$pid" 2>/dev/null && pids+=("$pid"); fi
    done
    for _ in $(seq 30); do
        local alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive -eq 0 ]] && break
        sleep 0.1
    done
    # Anything still living inside our own namespaces was started by us: stop it by PID.
    for ns in "${CREATED_NS[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    done
    sleep 0.2
    for ns in "${CREATED_NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    if [[ ${KEEP_WORK:-0} == 1 || $rc -ne 0 ]]; then
        log "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --------------------------------------------------------------------------------------------
# namespaces and links
# --------------------------------------------------------------------------------------------
for ns in "${ALL_NS[@]}"; do
    ip netns add "$ns"
    CREATED_NS+=("$ns")
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
done

veth() {  # ns1 if1 ns2 if2
    ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"
    ip netns exec "$1" sysctl -qw "net.ipv6.conf.$2.accept_dad=0"
    ip netns exec "$3" sysctl -qw "net.ipv6.conf.$4.accept_dad=0"
}
veth "$NS_FRR1" a-frr "$NS_BIRD1" a-bird
veth "$NS_FRR1" c-frr "$NS_BIRD1" c-bird
veth "$NS_FRR2" d-frr2 "$NS_FRR1" d-frr1
veth "$NS_BIRD2" r-client "$NS_BIRD1" r-bird

ip -n "$NS_FRR1"  addr add 10.255.1.1/24 dev a-frr
ip -n "$NS_FRR1"  addr add fd00:ffff::1:1/112 dev a-frr nodad
ip -n "$NS_BIRD1" addr add 10.255.1.2/24 dev a-bird
ip -n "$NS_BIRD1" addr add fd00:ffff::1:2/112 dev a-bird nodad
ip -n "$NS_FRR1"  addr add 10.255.3.1/24 dev c-frr
ip -n "$NS_FRR2"  addr add 10.255.4.2/24 dev d-frr2
ip -n "$NS_FRR1"  addr add 10.255.4.1/24 dev d-frr1
ip -n "$NS_BIRD1" addr add 10.255.3.2/24 dev c-bird
ip -n "$NS_BIRD2" addr add fd00:ffff::2:1/112 dev r-client nodad
ip -n "$NS_BIRD1" addr add fd00:ffff::2:2/112 dev r-bird nodad
ip -n "$NS_FRR1"  link set a-frr up
ip -n "$NS_BIRD1" link set a-bird up
ip -n "$NS_FRR1"  link set c-frr up
ip -n "$NS_FRR2"  link set d-frr2 up
ip -n "$NS_FRR1"  link set d-frr1 up
ip -n "$NS_BIRD1" link set c-bird up
ip -n "$NS_BIRD2" link set r-client up
ip -n "$NS_BIRD1" link set r-bird up

# wait for link-local addresses (needed for the 32-octet IPv6 next hops)
for _ in $(seq 50); do
    if ip -n "$NS_FRR1" -6 addr show dev a-frr scope link | grep -q 'inet6 fe80' &&
       ip -n "$NS_BIRD1" -6 addr show dev a-bird scope link | grep -q 'inet6 fe80' &&
       ip -n "$NS_BIRD1" -6 addr show dev r-bird scope link | grep -q 'inet6 fe80' &&
       ip -n "$NS_BIRD2" -6 addr show dev r-client scope link | grep -q 'inet6 fe80'; then break; fi
    sleep 0.1
done

# --------------------------------------------------------------------------------------------
# tcpdump (inside tern-cap-bird1, which takes part in every session)
# --------------------------------------------------------------------------------------------
ip netns exec "$NS_BIRD1" tcpdump -i any -U -s 0 -Z root -w "$PCAP" 'tcp port 179' 2>"$WORK/tcpdump.err" &
TCPDUMP_PID=$!
ip netns exec "$NS_FRR2" tcpdump -i d-frr2 -U -s 0 -Z root -w "$PCAP_D" 'tcp port 179' 2>"$WORK/tcpdump-d.err" &
TCPDUMP_D_PID=$!
for f in tcpdump.err tcpdump-d.err; do
    for _ in $(seq 50); do grep -q 'listening on' "$WORK/$f" && break; sleep 0.1; done
    grep -q 'listening on' "$WORK/$f" || { cat "$WORK/$f" >&2; die "tcpdump did not start"; }
done

# --------------------------------------------------------------------------------------------
# BIRD configs
# --------------------------------------------------------------------------------------------
mkdir -p "$WORK/bird1" "$WORK/bird2"

{
cat <<EOF
log "$WORK/bird1/bird.log" all;
router id 10.255.0.2;
ipv4 table t_a4;
ipv6 table t_a6;
ipv4 table t_b4;
ipv6 table t_b6;
ipv4 table t_c4;

protocol device { scan time 10; }

# ---- session a (eBGP to FRR1, AS65002) -------------------------------------------------------
protocol static st_a4 {
    ipv4 { table t_a4; import all; };
    route 10.2.1.0/24 blackhole {
        bgp_origin = ORIGIN_IGP;
        bgp_community.add((65002,100)); bgp_community.add((65002,200));
        bgp_large_community.add((65002,1,1)); bgp_large_community.add((65002,1,2));
        bgp_ext_community.add((rt,65002,100)); bgp_ext_community.add((ro,65002,7));
    };
    route 10.2.2.0/24 blackhole { bgp_origin = ORIGIN_EGP; bgp_community.add((65002,300)); };
}
# a second path for 10.2.1.0/24, so that ADD-PATH sends two path identifiers for one prefix
protocol static st_a4_alt {
    ipv4 { table t_a4; import all; };
    route 10.2.1.0/24 blackhole { bgp_origin = ORIGIN_IGP; bgp_community.add((65002,101)); };
}
# 1024 /24s with identical attributes: packed into large UPDATEs (> 4096 octets with ADD-PATH)
protocol static st_a4_bulk {
    ipv4 { table t_a4; import filter { bgp_origin = ORIGIN_IGP; bgp_community.add((65002,999)); accept; }; };
EOF
for x in 32 33 34 35; do for y in $(seq 0 255); do echo "    route 10.$x.$y.0/24 blackhole;"; done; done
cat <<EOF
}
protocol static st_a6 {
    ipv6 { table t_a6; import all; };
    route 2001:db8:2::/48 blackhole {
        bgp_origin = ORIGIN_IGP;
        bgp_community.add((65002,600));
        bgp_large_community.add((65002,6,6));
        bgp_ext_community.add((rt,65002,600));
    };
    route 2001:db8:21::/48 blackhole { bgp_origin = ORIGIN_IGP; };
}
protocol static st_a6_w {   # disabled later: MP_UNREACH_NLRI with a path identifier
    ipv6 { table t_a6; import all; };
    route 2001:db8:22::/48 blackhole { bgp_origin = ORIGIN_IGP; bgp_community.add((65002,622)); };
}
# BIRD sends MED to an eBGP peer only if the export filter set it
filter export_a4 {
    if (65002,100) ~ bgp_community then bgp_med = 20;
    if (65002,101) ~ bgp_community then bgp_med = 30;
    accept;
}
filter export_a6 {
    if net = 2001:db8:2::/48 then bgp_med = 40;
    accept;
}
protocol bgp frr_a {
    description "session a: eBGP to FRR1 over IPv4";
    local 10.255.1.2 as 65002;
    neighbor 10.255.1.1 as 65001;
    passive on;
    hold time 180;
    graceful restart on;
    long lived graceful restart on;
    long lived stale time 3600;
    enable extended messages on;
    enable route refresh on;
    ipv4 { table t_a4; import all; export filter export_a4; add paths on; };
    ipv6 { table t_a6; import all; export filter export_a6; add paths on; next hop address fd00:ffff::1:2; };
}

# ---- session b (iBGP to FRR1 over IPv6, BIRD1 is route reflector) ------------------------------
protocol static st_b4 {
    ipv4 { table t_b4; import all; };
    route 10.3.1.0/24 blackhole { bgp_origin = ORIGIN_IGP; bgp_local_pref = 300; bgp_community.add((65001,3100)); };
    route 10.3.2.0/24 blackhole { bgp_origin = ORIGIN_IGP; bgp_local_pref = 50; bgp_med = 7; };
}
protocol static st_b6 {
    ipv6 { table t_b6; import all; };
    route 2001:db8:31::/48 blackhole { bgp_origin = ORIGIN_IGP; bgp_local_pref = 300; bgp_large_community.add((65001,31,1)); };
}
protocol bgp frr_b {
    description "session b: iBGP to FRR1 over IPv6 (FRR1 is RR client)";
    local fd00:ffff::1:2 as 65001;
    neighbor fd00:ffff::1:1 as 65001;
    direct;
    passive on;
    rr client;
    rr cluster id 10.255.0.2;
    graceful restart on;
    ipv4 { table t_b4; import all; export all; extended next hop on; next hop self; gateway direct; };
    ipv6 { table t_b6; import all; export all; next hop self; gateway direct; };
}
protocol bgp bird2_r {
    description "session r: iBGP to BIRD2 (RR client, feeds 10.8.1.0/24 and 2001:db8:8::/48)";
    local fd00:ffff::2:2 as 65001;
    neighbor fd00:ffff::2:1 as 65001;
    direct;
    passive on;
    rr client;
    rr cluster id 10.255.0.2;
    ipv4 { table t_b4; import all; export all; extended next hop on; gateway direct; };
    ipv6 { table t_b6; import all; export all; gateway direct; };
}

# ---- session c (2-octet-AS-only BIRD, AS65003, to FRR1 AS65001) ------------------------------
protocol static st_c4 {
    ipv4 { table t_c4; import all; };
    route 10.5.1.0/24 blackhole { bgp_origin = ORIGIN_IGP; bgp_community.add((65003,500)); };
    route 10.5.2.0/24 blackhole { bgp_origin = ORIGIN_IGP; bgp_path.prepend(65020); };
}
protocol bgp frr_c {
    description "session c: BIRD without 4-octet AS support to FRR1";
    local 10.255.3.2 as 65003;
    neighbor 10.255.3.1 as 65001;
    passive on;
    enable as4 off;
    local role customer;
    ipv4 { table t_c4; import all; export filter { if net = 10.5.1.0/24 then bgp_med = 5; accept; }; };
}
EOF
} >"$WORK/bird1/bird.conf"

cat >"$WORK/bird2/bird.conf" <<EOF
log "$WORK/bird2/bird.log" all;
router id 10.255.0.4;
protocol device { scan time 10; }
protocol static st4 {
    ipv4 { import all; };
    route 10.8.1.0/24 blackhole {
        bgp_origin = ORIGIN_IGP; bgp_local_pref = 150;
        bgp_community.add((65001,800)); bgp_ext_community.add((rt,65001,800));
    };
}
protocol static st6 {
    ipv6 { import all; };
    route 2001:db8:8::/48 blackhole { bgp_origin = ORIGIN_IGP; bgp_local_pref = 150; bgp_community.add((65001,801)); };
}
protocol bgp to_rr {
    local fd00:ffff::2:1 as 65001;
    neighbor fd00:ffff::2:2 as 65001;
    direct;
    connect delay time 1;
    connect retry time 5;
    ipv4 { import all; export all; extended next hop on; gateway direct; };
    ipv6 { import all; export all; gateway direct; };
}
EOF

# --------------------------------------------------------------------------------------------
# FRR configs
# --------------------------------------------------------------------------------------------
mkdir -p "$WORK/frr1" "$WORK/frr2"

{
cat <<'EOF'
frr defaults traditional
hostname tern-frr1
! no automatic re-announcement 5 s after start-up when the route-map timer fires
bgp route-map delay-timer 0
!
ip prefix-list OWN4 seq 5 permit 10.1.0.0/16 le 24
ip prefix-list OWN4 seq 10 permit 10.16.0.0/14 le 24
ip prefix-list BULK seq 5 permit 10.16.0.0/14 le 24
ip prefix-list TO-C seq 5 permit 10.4.0.0/16 le 24
ip prefix-list TO-C seq 10 permit 10.6.0.0/16 le 24
ip prefix-list TO-C seq 15 permit 10.7.0.0/16 le 24
ip prefix-list TO-C seq 20 permit 10.1.2.0/24
ipv6 prefix-list OWN6 seq 5 permit 2001:db8:1::/48
ipv6 prefix-list OWN6 seq 10 permit 2001:db8:11::/48
ipv6 prefix-list OWN6 seq 15 permit 2001:db8:12::/48
!
route-map RM-V4-RICH permit 10
 set origin igp
 set metric 50
 set community 65001:100 65001:200
 set large-community 65001:1:1 65001:1:2
 set extcommunity rt 65001:100 10.255.0.1:7
 set extcommunity soo 65001:5
exit
route-map RM-V4-INCOMPLETE permit 10
 set origin incomplete
 set metric 0
 set community 65001:300
exit
route-map RM-BULK permit 10
 set origin igp
 set community 65001:999
exit
route-map RM-V6-RICH permit 10
 set origin igp
 set metric 60
 set community 65001:600
 set large-community 65001:6:6
 set extcommunity rt 65001:600
exit
route-map OUT-EBGP permit 10
 match ip address prefix-list OWN4
exit
route-map OUT-EBGP permit 20
 match ipv6 address prefix-list OWN6
exit
route-map OUT-C permit 10
 match ip address prefix-list TO-C
exit
route-map DENY-ALL deny 10
exit
route-map OUT-IBGP deny 5
 match ip address prefix-list BULK
exit
route-map OUT-IBGP permit 10
 match ip address prefix-list OWN4
 set local-preference 250
exit
route-map OUT-IBGP permit 20
 match ipv6 address prefix-list OWN6
 set local-preference 250
exit
!
router bgp 65001
 bgp router-id 10.255.0.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 no bgp default ipv4-unicast
 bgp graceful-restart
 bgp long-lived-graceful-restart stale-time 1800
 neighbor 10.255.1.2 remote-as 65002
 neighbor 10.255.1.2 description session a (eBGP to BIRD1)
 neighbor 10.255.1.2 timers connect 5
 neighbor fd00:ffff::1:2 remote-as 65001
 neighbor fd00:ffff::1:2 description session b (iBGP to BIRD1 RR)
 neighbor fd00:ffff::1:2 timers connect 5
 neighbor fd00:ffff::1:2 capability extended-nexthop
 neighbor 10.255.3.2 remote-as 65003
 neighbor 10.255.3.2 description session c (BIRD1 without as4)
 neighbor 10.255.3.2 timers connect 5
 neighbor 10.255.3.2 local-role provider
 neighbor 10.255.4.2 remote-as 4200000001
 neighbor 10.255.4.2 description session d (FRR2)
 neighbor 10.255.4.2 timers connect 5
 !
 address-family ipv4 unicast
  network 10.1.1.0/24 route-map RM-V4-RICH
  network 10.1.2.0/24 route-map RM-V4-INCOMPLETE
  network 10.1.3.0/24
EOF
for i in $(seq 0 999); do echo "  network 10.$((16 + i / 256)).$((i % 256)).0/24 route-map RM-BULK"; done
cat <<'EOF'
  neighbor 10.255.1.2 activate
  neighbor 10.255.1.2 send-community all
  neighbor 10.255.1.2 addpath-tx-all-paths
  neighbor 10.255.1.2 route-map OUT-EBGP out
  neighbor fd00:ffff::1:2 activate
  neighbor fd00:ffff::1:2 send-community all
  neighbor fd00:ffff::1:2 route-map OUT-IBGP out
  neighbor 10.255.3.2 activate
  neighbor 10.255.3.2 send-community all
  neighbor 10.255.3.2 route-map OUT-C out
  neighbor 10.255.4.2 activate
  neighbor 10.255.4.2 route-map DENY-ALL out
 exit-address-family
 !
 address-family ipv6 unicast
  network 2001:db8:1::/48 route-map RM-V6-RICH
  network 2001:db8:11::/48
  network 2001:db8:12::/48
  neighbor 10.255.1.2 activate
  neighbor 10.255.1.2 send-community all
  neighbor 10.255.1.2 addpath-tx-all-paths
  neighbor 10.255.1.2 route-map OUT-EBGP out
  neighbor fd00:ffff::1:2 activate
  neighbor fd00:ffff::1:2 send-community all
  neighbor fd00:ffff::1:2 route-map OUT-IBGP out
 exit-address-family
exit
!
EOF
} >"$WORK/frr1/bgpd.conf"

cat >"$WORK/frr2/bgpd.conf" <<'EOF'
frr defaults traditional
hostname tern-frr2
bgp route-map delay-timer 0
!
route-map RM-AGG-C1 permit 10
 set origin igp
 set as-path prepend 4200000002
 set community 65010:1
exit
route-map RM-AGG-C2 permit 10
 set origin igp
 set as-path prepend 65010
 set community 65010:2
exit
route-map RM-LONG permit 10
 set origin igp
 set as-path prepend 4200000002 65010 4200000003
 set community 65010:20
 set large-community 4200000001:1:2
 set extcommunity rt 4200000001:10
exit
!
router bgp 4200000001
 bgp router-id 10.255.0.3
 no bgp ebgp-requires-policy
 no bgp network import-check
 no bgp default ipv4-unicast
 neighbor 10.255.4.1 remote-as 65001
 neighbor 10.255.4.1 description session d (FRR1)
 neighbor 10.255.4.1 timers connect 5
 !
 address-family ipv4 unicast
  network 10.4.1.0/24
  network 10.4.2.0/24
  aggregate-address 10.4.0.0/16 summary-only
  network 10.6.1.0/24 route-map RM-AGG-C1
  network 10.6.2.0/24 route-map RM-AGG-C2
  aggregate-address 10.6.0.0/16 as-set
  network 10.7.1.0/24 route-map RM-LONG
  neighbor 10.255.4.1 activate
  neighbor 10.255.4.1 send-community all
 exit-address-family
exit
!
EOF

for i in 1 2; do
    printf 'frr defaults traditional\nhostname tern-frr%s\n!\n' "$i" >"$WORK/frr$i/zebra.conf"
    chown -R frr:frr "$WORK/frr$i"
    chmod 750 "$WORK/frr$i"
done

# --------------------------------------------------------------------------------------------
# start daemons
# --------------------------------------------------------------------------------------------
start_bird() {  # ns dir
    local ns=$1 dir=$2
    bird -p -c "$dir/bird.conf" || die "bird config $dir/bird.conf does not parse"
    PIDFILES+=("bird:$dir/bird.pid:$ns")
    ip netns exec "$ns" bird -c "$dir/bird.conf" -s "$dir/bird.ctl" -P "$dir/bird.pid"
}
start_frr() {  # ns dir
    local ns=$1 dir=$2 d
    for d in zebra bgpd; do
        PIDFILES+=("$d:$dir/$d.pid:$ns")
        ip netns exec "$ns" "$FRR_BIN/$d" -d -f "$dir/$d.conf" -i "$dir/$d.pid" -z "$dir/zserv.api" \
            --vty_socket "$dir" -P 0 --log "file:$dir/$d.log"
        if [[ $d == zebra ]]; then
            for _ in $(seq 50); do [[ -S $dir/zserv.api ]] && break; sleep 0.1; done
        fi
    done
}
birdc1() { birdc -s "$WORK/bird1/bird.ctl" "$@"; }
birdc2() { birdc -s "$WORK/bird2/bird.ctl" "$@"; }
vty1() { vtysh --vty_socket "$WORK/frr1" "$@"; }
vty2() { vtysh --vty_socket "$WORK/frr2" "$@"; }

start_bird "$NS_BIRD1" "$WORK/bird1"
start_bird "$NS_BIRD2" "$WORK/bird2"
for _ in $(seq 50); do [[ -S $WORK/bird1/bird.ctl ]] && break; sleep 0.1; done
start_frr "$NS_FRR1" "$WORK/frr1"
start_frr "$NS_FRR2" "$WORK/frr2"
log "daemons started"

# --------------------------------------------------------------------------------------------
# wait for Established and initial convergence
# --------------------------------------------------------------------------------------------
established() {  # bird protocol name
    birdc1 show protocols "$1" 2>/dev/null | awk -v p="$1" '$1 == p' | grep -q Established
}
t0=$SECONDS
until established frr_a && established frr_b && established frr_c && established bird2_r; do
    if (( SECONDS - t0 > DEADLINE_ESTABLISHED )); then
        birdc1 show protocols >&2 || true
        vty1 -c 'show bgp summary' >&2 || true
        vty2 -c 'show bgp summary' >&2 || true
        die "sessions not Established after ${DEADLINE_ESTABLISHED}s"
    fi
    sleep 0.5
done
log "all sessions Established after $((SECONDS - t0))s"

imported() {  # bird protocol -> total routes imported over all channels
    birdc1 show protocols all "$1" 2>/dev/null | awk '/Routes:/ {s += $2} END {print s + 0}'
}
frr1_rcvd() {  # neighbor afi -> prefixes received
    vty1 -c "show bgp $2 unicast summary json" 2>/dev/null |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("peers",{}).get(sys.argv[1],{}).get("pfxRcd",0))' "$1" 2>/dev/null || echo 0
}
t0=$SECONDS
until (( $(imported frr_a) >= 1006 && $(imported frr_b) >= 6 && $(imported frr_c) >= 6 && $(imported bird2_r) >= 2 \
        && $(frr1_rcvd 10.255.1.2 ipv4) >= 1026 && $(frr1_rcvd 10.255.1.2 ipv6) >= 3 \
        && $(frr1_rcvd fd00:ffff::1:2 ipv4) >= 3 && $(frr1_rcvd fd00:ffff::1:2 ipv6) >= 2 )); do
    if (( SECONDS - t0 > 30 )); then
        log "initial routes not complete after 30s, continuing anyway"
        birdc1 show protocols all >&2 || true
        vty1 -c 'show bgp summary' >&2 || true
        break
    fi
    sleep 0.5
done
sleep 3   # let End-of-RIB markers and keepalives go out
log "initial exchange done after $((SECONDS - t0))s"

# --------------------------------------------------------------------------------------------
# scripted events
# --------------------------------------------------------------------------------------------
# 1. BIRD asks FRR1 for a refresh (ROUTE-REFRESH BIRD->FRR, FRR answers BoRR ... EoRR)
birdc1 reload in frr_a >/dev/null
sleep 2
# 2. FRR1 asks BIRD for a refresh (clear ... soft in -> ROUTE-REFRESH FRR->BIRD, BIRD answers BoRR ... EoRR)
vty1 -c 'clear bgp ipv4 unicast 10.255.1.2 soft in' >/dev/null
vty1 -c 'clear bgp ipv6 unicast 10.255.1.2 soft in' >/dev/null
sleep 3
# 3. withdrawals
vty1 -c 'configure terminal' -c 'router bgp 65001' -c 'address-family ipv4 unicast' -c 'no network 10.1.3.0/24' >/dev/null
vty1 -c 'configure terminal' -c 'router bgp 65001' -c 'address-family ipv6 unicast' -c 'no network 2001:db8:12::/48' >/dev/null
birdc1 disable st_a4_alt >/dev/null
birdc1 disable st_a6_w >/dev/null
sleep 3
# 4. NOTIFICATIONs: FRR1 Cease/Administrative Shutdown with RFC 8203 message on session a,
#    BIRD1 Cease/Administrative Shutdown with message on session b, FRR1 plain shutdown on session c.
vty1 -c 'configure terminal' -c 'router bgp 65001' -c 'neighbor 10.255.1.2 shutdown message maintenance window 42' >/dev/null
birdc1 disable frr_b '"bird going down for test"' >/dev/null
vty1 -c 'configure terminal' -c 'router bgp 65001' -c 'neighbor 10.255.3.2 shutdown' >/dev/null
sleep 2

stop_tcpdump
log "capture stopped"
mkdir -p "$OUT"
cp "$PCAP" "$OUT/capture.pcap"
cp "$PCAP_D" "$OUT/capture-d.pcap"
if [[ ${KEEP_WORK:-0} == 1 ]]; then
    birdc1 show protocols all >"$WORK/bird1/final-protocols.txt" 2>&1 || true
    vty1 -c 'show bgp neighbors' >"$WORK/frr1/final-neighbors.txt" 2>&1 || true
fi
cleanup
trap - EXIT

# --------------------------------------------------------------------------------------------
# extraction
# --------------------------------------------------------------------------------------------
DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
python3 - "$OUT/capture.meta.json" "$DATE" "$FRR_DESC" "$BIRD_DESC" "$FRR_VER" "$BIRD_VER" <<'EOF'
import json, sys
path, date, frr, bird, frr_ver, bird_ver = sys.argv[1:]
speakers = {
    "10.255.1.1": {"slug": f"frr-{frr_ver}", "desc": frr, "instance": "frr1 (AS 65001, router-id 10.255.0.1)"},
    "fd00:ffff::1:1": {"slug": f"frr-{frr_ver}", "desc": frr, "instance": "frr1 (AS 65001, router-id 10.255.0.1)"},
    "10.255.1.2": {"slug": f"bird-{bird_ver}", "desc": bird, "instance": "bird1 (protocol frr_a, AS 65002, router-id 10.255.0.2)"},
    "fd00:ffff::1:2": {"slug": f"bird-{bird_ver}", "desc": bird, "instance": "bird1 (protocol frr_b, AS 65001, route reflector, router-id 10.255.0.2)"},
    "10.255.3.1": {"slug": f"frr-{frr_ver}", "desc": frr, "instance": "frr1 (AS 65001, router-id 10.255.0.1)"},
    "10.255.3.2": {"slug": f"bird-{bird_ver}", "desc": bird, "instance": "bird1 (protocol frr_c, AS 65003, enable as4 off)"},
    "10.255.4.1": {"slug": f"frr-{frr_ver}", "desc": frr, "instance": "frr1 (AS 65001, router-id 10.255.0.1)"},
    "10.255.4.2": {"slug": f"frr-{frr_ver}-as4200000001", "desc": frr, "instance": "frr2 (AS 4200000001, router-id 10.255.0.3)"},
    "fd00:ffff::2:1": {"slug": f"bird-{bird_ver}-client", "desc": bird, "instance": "bird2 (AS 65001, RR client, router-id 10.255.0.4)"},
    "fd00:ffff::2:2": {"slug": f"bird-{bird_ver}-rr", "desc": bird, "instance": "bird1 (protocol bird2_r, AS 65001, route reflector, router-id 10.255.0.2)"},
}
sessions = [
    {"a": "10.255.1.1", "b": "10.255.1.2", "tag": "ebgp"},
    {"a": "fd00:ffff::1:1", "b": "fd00:ffff::1:2", "tag": "ibgp-v6"},
    {"a": "10.255.3.1", "b": "10.255.3.2", "tag": "as2"},
    {"a": "10.255.4.1", "b": "10.255.4.2", "tag": "ebgp-as4"},
    {"a": "fd00:ffff::2:1", "b": "fd00:ffff::2:2", "tag": "ibgp-rr"},
]
json.dump({"captured": date, "tool": "capture.sh", "speakers": speakers, "sessions": sessions},
          open(path, "w"), indent=2)
EOF
python3 "$HERE/extract.py" --meta "$OUT/capture.meta.json" -o "$OUT" "$OUT/capture.pcap" "$OUT/capture-d.pcap"
log "done: vectors in $OUT"
