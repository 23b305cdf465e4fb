#!/usr/bin/env python3
"""Turn a pcap of BGP sessions into text test vectors (python3 standard library only).

    extract.py [--meta capture.meta.json] [--date DATE] -o OUTDIR PCAP [PCAP ...]

Reads a classic pcap or pcapng file (Ethernet, Linux cooked SLL/SLL2, raw IP or BSD loopback
link types; IPv4/IPv6; TCP), reassembles every TCP direction of every connection to or from port
179 in sequence order (retransmitted and duplicate bytes are dropped, overlaps trimmed), splits
the byte streams into BGP messages (16 x 0xff marker, 2-octet length, type) and writes one vector
file per session direction:

    # source: <sender> -> <receiver>; captured by capture.sh on <date>
    # session: <what was negotiated, for the decoder's context>
    # context: four_octet_as=yes extended_messages=yes add_path=ipv4/unicast,... external=yes ...
    # messages: open 1, update 12, keepalive 3, ...
    # <one line describing the next message>
    <type> <full message hex, lowercase, no spaces>
    ...

The meta file (written by capture.sh) maps addresses to speakers and names the sessions; without
it the files are named after the addresses.
"""

import argparse
import ipaddress
import json
import os
import struct
import sys
from collections import Counter, OrderedDict

MARKER = b"\xff" * 16
MSG_TYPES = {1: "open", 2: "update", 3: "notification", 4: "keepalive", 5: "route-refresh"}

# --------------------------------------------------------------------------------------------
# pcap reading
# --------------------------------------------------------------------------------------------


def read_pcap(path):
    """Yield (linktype, timestamp, frame bytes)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        return
    magic = data[:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        yield from _read_pcapng(data)
        return
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise SystemExit(f"{path}: not a pcap/pcapng file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    _vmaj, _vmin, _tz, _sig, _snap, linktype = struct.unpack(endian + "HHiIII", data[4:24])
    linktype &= 0x0FFFFFFF
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        frame = data[off:off + incl]
        off += incl
        yield linktype, sec + frac / (1e9 if nano else 1e6), frame


def _read_pcapng(data):
    off = 0
    endian = "<"
    linktypes = []
    while off + 12 <= len(data):
        btype = struct.unpack(endian + "I", data[off:off + 4])[0]
        if btype == 0x0A0D0D0A:
            bom = data[off + 8:off + 12]
            endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            linktypes = []
        blen = struct.unpack(endian + "I", data[off + 4:off + 8])[0]
        if blen < 12:
            break
        body = data[off + 8:off + blen - 4]
        if btype == 1:  # interface description
            linktypes.append(struct.unpack(endian + "H", body[:2])[0])
        elif btype == 6:  # enhanced packet
            ifid, tsh, tsl, cap, _orig = struct.unpack(endian + "IIIII", body[:20])
            yield linktypes[ifid], ((tsh << 32) | tsl) / 1e6, body[20:20 + cap]
        elif btype == 3:  # simple packet
            cap = len(body) - 4
            yield linktypes[0], 0.0, body[4:4 + cap]
        off += blen


def parse_frame(linktype, frame):
    """Return (src ip, src port, dst ip, dst port, seq, flags, payload) for TCP frames, else None."""
    if linktype == 1:  # Ethernet
        if len(frame) < 14:
            return None
        ethertype = struct.unpack("!H", frame[12:14])[0]
        off = 14
        while ethertype in (0x8100, 0x88A8, 0x9100) and len(frame) >= off + 4:
            ethertype = struct.unpack("!H", frame[off + 2:off + 4])[0]
            off += 4
        ip = frame[off:]
    elif linktype == 113:  # Linux cooked v1
        if len(frame) < 16:
            return None
        ethertype = struct.unpack("!H", frame[14:16])[0]
        ip = frame[16:]
    elif linktype == 276:  # Linux cooked v2
        if len(frame) < 20:
            return None
        ethertype = struct.unpack("!H", frame[0:2])[0]
        ip = frame[20:]
    elif linktype in (12, 14, 101, 228, 229):  # raw IP
        ip = frame
        ethertype = 0x0800 if ip and ip[0] >> 4 == 4 else 0x86DD
    elif linktype in (0, 109):  # BSD loopback / NULL
        family = struct.unpack("<I", frame[:4])[0]
        if family > 0xFFFF:
            family = struct.unpack(">I", frame[:4])[0]
        ethertype = 0x0800 if family == 2 else 0x86DD
        ip = frame[4:]
    else:
        return None
    if ethertype == 0x0800:
        if len(ip) < 20 or ip[0] >> 4 != 4:
            return None
        ihl = (ip[0] & 15) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        frag = struct.unpack("!H", ip[6:8])[0]
        if frag & 0x3FFF:
            sys.stderr.write("warning: skipping IPv4 fragment\n")
            return None
        if ip[9] != 6:
            return None
        src = str(ipaddress.IPv4Address(ip[12:16]))
        dst = str(ipaddress.IPv4Address(ip[16:20]))
        seg = ip[ihl:total] if total >= ihl else ip[ihl:]
    elif ethertype == 0x86DD:
        if len(ip) < 40 or ip[0] >> 4 != 6:
            return None
        plen = struct.unpack("!H", ip[4:6])[0]
        nh = ip[6]
        src = str(ipaddress.IPv6Address(ip[8:24]))
        dst = str(ipaddress.IPv6Address(ip[24:40]))
        rest = ip[40:40 + plen] if plen else ip[40:]
        while nh in (0, 43, 60, 44):
            if nh == 44:
                sys.stderr.write("warning: skipping IPv6 fragment\n")
                return None
            nh, hlen = rest[0], (rest[1] + 1) * 8
            rest = rest[hlen:]
        if nh != 6:
            return None
        seg = rest
    else:
        return None
    if len(seg) < 20:
        return None
    sport, dport, seq, _ack, offflags = struct.unpack("!HHIIH", seg[:14])
    doff = (offflags >> 12) * 4
    flags = offflags & 0x1FF
    return src, sport, dst, dport, seq, flags, seg[doff:]


# --------------------------------------------------------------------------------------------
# TCP reassembly
# --------------------------------------------------------------------------------------------
SYN, FIN, RST, ACK = 0x02, 0x01, 0x04, 0x10


class Flow:
    def __init__(self, src, sport, dst, dport):
        self.src, self.sport, self.dst, self.dport = src, sport, dst, dport
        self.isn = None
        self.segments = []  # (seq, payload)
        self.first_ts = None

    def stream(self):
        """Bytes in sequence order; returns (data, stats)."""
        stats = Counter()
        if not self.segments:
            return b"", stats
        base = (self.isn + 1) & 0xFFFFFFFF if self.isn is not None else self.segments[0][0]
        segs = []
        for i, (seq, payload) in enumerate(self.segments):
            rel = (seq - base) & 0xFFFFFFFF
            if rel >= 0x80000000:  # before base (should not happen)
                rel -= 0x100000000
            segs.append((rel, i, payload))
        segs.sort()
        out = bytearray()
        for rel, _i, payload in segs:
            end = rel + len(payload)
            if end <= len(out):
                stats["duplicate/retransmitted segments dropped"] += 1
                continue
            if rel > len(out):
                stats["gaps (missing bytes)"] += 1
                sys.stderr.write(
                    f"warning: {self.src}:{self.sport} -> {self.dst}:{self.dport}: "
                    f"{rel - len(out)} bytes missing at stream offset {len(out)}; stream cut there\n")
                break
            if rel < len(out):
                stats["overlapping segments trimmed"] += 1
                payload = payload[len(out) - rel:]
            out += payload
        return bytes(out), stats


class Connection:
    def __init__(self, client, server, ts):
        self.client, self.server = client, server  # (ip, port)
        self.flows = {client: None, server: None}
        self.first_ts = ts

    def flow(self, src, sport, dst, dport):
        key = (src, sport)
        if self.flows.get(key) is None:
            self.flows[key] = Flow(src, sport, dst, dport)
        return self.flows[key]


def reassemble(pcap):
    conns = []
    current = {}  # frozenset of endpoints -> Connection
    for linktype, ts, frame in read_pcap(pcap):
        p = parse_frame(linktype, frame)
        if p is None:
            continue
        src, sport, dst, dport, seq, flags, payload = p
        if sport != 179 and dport != 179:
            continue
        key = frozenset([(src, sport), (dst, dport)])
        conn = current.get(key)
        if flags & SYN and not flags & ACK:
            existing = conn.flows.get((src, sport)) if conn else None
            if conn is None or (existing is not None and existing.isn is not None and existing.isn != seq) \
                    or (existing is not None and existing.segments):
                conn = Connection((src, sport), (dst, dport), ts)
                current[key] = conn
                conns.append(conn)
        if conn is None:  # capture started mid-connection
            client, server = ((src, sport), (dst, dport)) if dport == 179 else ((dst, dport), (src, sport))
            conn = Connection(client, server, ts)
            current[key] = conn
            conns.append(conn)
        fl = conn.flow(src, sport, dst, dport)
        if flags & SYN:
            fl.isn = seq
        if payload:
            if fl.first_ts is None:
                fl.first_ts = ts
            fl.segments.append((seq, payload))
    return conns


def split_messages(data, where):
    msgs = []
    off = 0
    while off < len(data):
        if len(data) - off < 19:
            sys.stderr.write(f"warning: {where}: {len(data) - off} trailing bytes (incomplete header)\n")
            break
        if data[off:off + 16] != MARKER:
            sys.stderr.write(f"warning: {where}: bad marker at offset {off}; rest of stream skipped\n")
            break
        length = struct.unpack("!H", data[off + 16:off + 18])[0]
        if length < 19:
            sys.stderr.write(f"warning: {where}: bad length {length} at offset {off}\n")
            break
        if off + length > len(data):
            sys.stderr.write(f"warning: {where}: last message truncated ({len(data) - off} of {length} bytes)\n")
            break
        msgs.append(data[off:off + length])
        off += length
    return msgs


# --------------------------------------------------------------------------------------------
# BGP decoding (only as far as needed to describe messages and the negotiated context)
# --------------------------------------------------------------------------------------------
AFI = {1: "ipv4", 2: "ipv6", 25: "l2vpn"}
SAFI = {1: "unicast", 2: "multicast", 4: "labeled-unicast", 5: "mvpn", 65: "vpls", 70: "evpn",
        73: "sr-policy", 128: "vpn", 129: "vpn-multicast", 132: "rtc", 133: "flowspec", 134: "flowspec-vpn"}


def fam(afi, safi):
    return f"{AFI.get(afi, f'afi{afi}')}/{SAFI.get(safi, f'safi{safi}')}"


def ip4(b):
    return str(ipaddress.IPv4Address(b))


def ip6(b):
    return str(ipaddress.IPv6Address(b))


class Open:
    def __init__(self, msg):
        body = msg[19:]
        self.version, self.my_as, self.hold, bgp_id, optlen = struct.unpack("!BHHIB", body[:10])
        self.bgp_id = ip4(struct.pack("!I", bgp_id))
        params = body[10:10 + optlen]
        ext_params = False
        if optlen == 255 and len(body) >= 12 and body[10] == 255:  # RFC 9072
            ext_params = True
            optlen = struct.unpack("!H", body[11:13])[0]
            params = body[13:13 + optlen]
        self.ext_params = ext_params
        self.caps = []  # (code, value bytes)
        off = 0
        while off < len(params):
            ptype = params[off]
            if ext_params:
                plen = struct.unpack("!H", params[off + 1:off + 3])[0]
                pval = params[off + 3:off + 3 + plen]
                off += 3 + plen
            else:
                plen = params[off + 1]
                pval = params[off + 2:off + 2 + plen]
                off += 2 + plen
            if ptype != 2:
                self.caps.append((-ptype, pval))
                continue
            c = 0
            while c + 2 <= len(pval):
                code, clen = pval[c], pval[c + 1]
                self.caps.append((code, pval[c + 2:c + 2 + clen]))
                c += 2 + clen

    def cap(self, code):
        return [v for c, v in self.caps if c == code]

    @property
    def as4(self):
        v = self.cap(65)
        return struct.unpack("!I", v[0][:4])[0] if v and len(v[0]) >= 4 else None

    @property
    def asn(self):
        return self.as4 if self.as4 is not None else self.my_as

    def families(self):
        out = []
        for v in self.cap(1):
            afi, _res, safi = struct.unpack("!HBB", v[:4])
            out.append((afi, safi))
        return out

    def addpath(self):
        """(afi, safi) -> send/receive bits (1 receive, 2 send)."""
        out = {}
        for v in self.cap(69):
            for i in range(0, len(v) - 3, 4):
                afi, safi, sr = struct.unpack("!HBB", v[i:i + 4])
                out[(afi, safi)] = out.get((afi, safi), 0) | sr
        return out

    def enhe(self):
        out = set()
        for v in self.cap(5):
            for i in range(0, len(v) - 5, 6):
                afi, safi, nhafi = struct.unpack("!HHH", v[i:i + 6])
                out.add((afi, safi, nhafi))
        return out

    def describe_caps(self):
        parts = []
        for code, v in self.caps:
            if code < 0:
                parts.append(f"opt-param{-code} {v.hex()}")
            elif code == 1:
                afi, _r, safi = struct.unpack("!HBB", v[:4])
                parts.append(f"multiprotocol {fam(afi, safi)}")
            elif code == 2:
                parts.append("route-refresh")
            elif code == 128:
                parts.append("route-refresh(old cisco 128)")
            elif code == 5:
                items = [f"{fam(a, s)} nh {AFI.get(n, n)}" for (a, s, n) in
                         (struct.unpack("!HHH", v[i:i + 6]) for i in range(0, len(v) - 5, 6))]
                parts.append("extended-nexthop " + ", ".join(items))
            elif code == 6:
                parts.append("extended-message")
            elif code == 9:
                roles = {0: "provider", 1: "rs", 2: "rs-client", 3: "customer", 4: "peer"}
                parts.append(f"role {roles.get(v[0], v[0]) if v else '?'}")
            elif code == 64:
                flags_time = struct.unpack("!H", v[:2])[0]
                flags, rtime = flags_time >> 12, flags_time & 0xFFF
                fl = "".join(n for b, n in ((8, "R"), (4, "N")) if flags & b) or "-"
                afs = []
                for i in range(2, len(v) - 3, 4):
                    afi, safi, aff = struct.unpack("!HBB", v[i:i + 4])
                    afs.append(f"{fam(afi, safi)}{' F' if aff & 0x80 else ''}")
                parts.append(f"graceful-restart flags {fl} time {rtime}s [{', '.join(afs)}]")
            elif code == 65:
                parts.append(f"as4 {struct.unpack('!I', v[:4])[0]}")
            elif code == 69:
                srn = {1: "receive", 2: "send", 3: "send/receive"}
                items = []
                for i in range(0, len(v) - 3, 4):
                    afi, safi, sr = struct.unpack("!HBB", v[i:i + 4])
                    items.append(f"{fam(afi, safi)} {srn.get(sr, sr)}")
                parts.append("add-path " + ", ".join(items))
            elif code == 70:
                parts.append("enhanced-route-refresh")
            elif code == 71:
                items = []
                for i in range(0, len(v) - 6, 7):
                    afi, safi, fl = struct.unpack("!HBB", v[i:i + 4])
                    stale = int.from_bytes(v[i + 4:i + 7], "big")
                    items.append(f"{fam(afi, safi)} stale {stale}s{' F' if fl & 0x80 else ''}")
                parts.append("long-lived-graceful-restart [" + ", ".join(items) + "]")
            elif code == 73:
                hl = v[0]
                host = v[1:1 + hl].decode(errors="replace")
                dl = v[1 + hl] if len(v) > 1 + hl else 0
                dom = v[2 + hl:2 + hl + dl].decode(errors="replace")
                parts.append(f"fqdn host {host!r} domain {dom!r}")
            elif code == 75:
                parts.append(f"software-version {v[1:].decode(errors='replace')!r}")
            else:
                parts.append(f"cap{code} {v.hex()}")
        return parts


class Ctx:
    """What the decoder needs to know for messages sent in one direction."""

    def __init__(self, sender, receiver, external):
        self.as4 = bool(sender and receiver and sender.as4 is not None and receiver.as4 is not None)
        self.ext_msg = bool(sender and receiver and sender.cap(6) and receiver.cap(6))
        self.addpath = set()
        if sender and receiver:
            rs, rr = sender.addpath(), receiver.addpath()
            for af, bits in rs.items():
                if bits & 2 and rr.get(af, 0) & 1:
                    self.addpath.add(af)
        self.enhe = set()
        if sender and receiver:
            self.enhe = {x for x in receiver.enhe() if x in sender.enhe()}
        self.families = sorted(set(sender.families()) & set(receiver.families())) if sender and receiver else []
        self.external = external


def prefixes(data, afi, addpath):
    out = []
    off = 0
    alen = 4 if afi == 1 else 16
    while off < len(data):
        pid = None
        if addpath:
            pid = struct.unpack("!I", data[off:off + 4])[0]
            off += 4
        plen = data[off]
        nb = (plen + 7) // 8
        raw = data[off + 1:off + 1 + nb] + b"\x00" * (alen - nb)
        off += 1 + nb
        if afi == 1:
            out.append((pid, f"{ip4(raw[:4])}/{plen}"))
        elif afi == 2:
            out.append((pid, f"{ip6(raw[:16])}/{plen}"))
        else:
            out.append((pid, f"{raw[:nb].hex()}/{plen}"))
    return out


def fmt_prefixes(pfx, limit=6):
    def one(p):
        pid, s = p
        return s if pid is None else f"{s} id {pid}"
    if len(pfx) <= limit:
        return ", ".join(one(p) for p in pfx)
    ids = sorted({p[0] for p in pfx if p[0] is not None})
    idtxt = "" if not ids else (f", path ids {ids}" if len(ids) <= 4 else f", {len(ids)} distinct path ids")
    return (f"{len(pfx)} prefixes: {', '.join(one(p) for p in pfx[:3])}, ..., "
            f"{', '.join(one(p) for p in pfx[-2:])}{idtxt}")


WELL_KNOWN_COMM = {0xFFFFFF01: "no-export", 0xFFFFFF02: "no-advertise", 0xFFFFFF03: "no-export-subconfed",
                   0xFFFF0000: "graceful-shutdown", 0xFFFF0006: "llgr-stale", 0xFFFF0007: "no-llgr",
                   0xFFFF029A: "blackhole", 0xFFFFFF04: "nopeer"}
ORIGIN = {0: "IGP", 1: "EGP", 2: "INCOMPLETE"}


def as_path(v, width):
    segs = []
    off = 0
    seg_names = {1: "set", 2: "seq", 3: "confed-seq", 4: "confed-set"}
    while off + 2 <= len(v):
        stype, cnt = v[off], v[off + 1]
        off += 2
        fmt = "!%d%s" % (cnt, "I" if width == 4 else "H")
        asns = struct.unpack(fmt, v[off:off + cnt * width])
        off += cnt * width
        body = " ".join(str(a) for a in asns)
        if stype == 2:
            segs.append(body)
        elif stype == 1:
            segs.append("{" + body + "}")
        else:
            segs.append(f"{seg_names.get(stype, stype)}({body})")
    return "[" + " ".join(segs) + "]"


def ext_comm(c):
    t, st = c[0], c[1]
    names = {2: "rt", 3: "soo", 5: "odi", 8: "bgp-data-coll", 9: "source-as", 0x0B: "vrf-import",
             0x10: "cisco-vpn-dist", 4: "link-bw"}
    n = names.get(st, f"subtype{st}")
    if t in (0x00, 0x40):
        return f"{n}:{struct.unpack('!H', c[2:4])[0]}:{struct.unpack('!I', c[4:8])[0]}" + \
               ("(non-transitive)" if t & 0x40 else "")
    if t in (0x01, 0x41):
        return f"{n}:{ip4(c[2:6])}:{struct.unpack('!H', c[6:8])[0]}"
    if t in (0x02, 0x42):
        return f"{n}:{struct.unpack('!I', c[2:6])[0]}:{struct.unpack('!H', c[6:8])[0]}(as4)"
    return f"ext:{c.hex()}"


def describe_update(msg, ctx):
    body = msg[19:]
    wlen = struct.unpack("!H", body[:2])[0]
    withdrawn = body[2:2 + wlen]
    alen = struct.unpack("!H", body[2 + wlen:4 + wlen])[0]
    attrs = body[4 + wlen:4 + wlen + alen]
    nlri = body[4 + wlen + alen:]
    parts = []
    v4_addpath = (1, 1) in ctx.addpath
    if not withdrawn and not attrs and not nlri:
        return "UPDATE End-of-RIB ipv4/unicast"
    attr_list = []
    off = 0
    while off < len(attrs):
        flags, code = attrs[off], attrs[off + 1]
        if flags & 0x10:
            ln = struct.unpack("!H", attrs[off + 2:off + 4])[0]
            val = attrs[off + 4:off + 4 + ln]
            off += 4 + ln
        else:
            ln = attrs[off + 2]
            val = attrs[off + 3:off + 3 + ln]
            off += 3 + ln
        attr_list.append((flags, code, val))
    if not withdrawn and not nlri and len(attr_list) == 1 and attr_list[0][1] == 15 \
            and len(attr_list[0][2]) == 3:
        afi, safi = struct.unpack("!HB", attr_list[0][2])
        return f"UPDATE End-of-RIB {fam(afi, safi)} (empty MP_UNREACH_NLRI)"
    if withdrawn:
        parts.append("withdraw " + fmt_prefixes(prefixes(withdrawn, 1, v4_addpath)))
    if nlri:
        parts.append("NLRI " + fmt_prefixes(prefixes(nlri, 1, v4_addpath)))
    for flags, code, val in attr_list:
        if code == 1:
            parts.append(f"ORIGIN {ORIGIN.get(val[0], val[0])}")
        elif code == 2:
            parts.append(f"AS_PATH {as_path(val, 4 if ctx.as4 else 2)}")
        elif code == 3:
            parts.append(f"NEXT_HOP {ip4(val)}")
        elif code == 4:
            parts.append(f"MED {struct.unpack('!I', val)[0]}")
        elif code == 5:
            parts.append(f"LOCAL_PREF {struct.unpack('!I', val)[0]}")
        elif code == 6:
            parts.append("ATOMIC_AGGREGATE")
        elif code == 7:
            if len(val) == 8:
                parts.append(f"AGGREGATOR {struct.unpack('!I', val[:4])[0]} {ip4(val[4:])}")
            else:
                parts.append(f"AGGREGATOR {struct.unpack('!H', val[:2])[0]} {ip4(val[2:6])}")
        elif code == 8:
            cs = []
            for i in range(0, len(val), 4):
                c = struct.unpack("!I", val[i:i + 4])[0]
                cs.append(WELL_KNOWN_COMM.get(c, f"{c >> 16}:{c & 0xFFFF}"))
            parts.append("COMMUNITIES " + " ".join(cs))
        elif code == 9:
            parts.append(f"ORIGINATOR_ID {ip4(val)}")
        elif code == 10:
            parts.append("CLUSTER_LIST " + " ".join(ip4(val[i:i + 4]) for i in range(0, len(val), 4)))
        elif code == 14:
            afi, safi, nhl = struct.unpack("!HBB", val[:4])
            nh = val[4:4 + nhl]
            if nhl == 4:
                nhs = ip4(nh)
            elif nhl == 16:
                nhs = ip6(nh)
            elif nhl == 32:
                nhs = f"{ip6(nh[:16])} + link-local {ip6(nh[16:])}"
            elif nhl == 12:
                nhs = f"rd {nh[:8].hex()} {ip4(nh[8:])}"
            elif nhl == 24:
                nhs = f"rd {nh[:8].hex()} {ip6(nh[8:])}"
            else:
                nhs = nh.hex()
            rest = val[4 + nhl + 1:]
            pf = prefixes(rest, afi, (afi, safi) in ctx.addpath) if afi in (1, 2) and safi in (1, 2) else []
            what = fmt_prefixes(pf) if pf or not rest else f"{len(rest)} bytes {rest.hex()}"
            parts.append(f"MP_REACH_NLRI {fam(afi, safi)} next-hop ({nhl} octets) {nhs} NLRI {what}")
        elif code == 15:
            afi, safi = struct.unpack("!HB", val[:3])
            rest = val[3:]
            pf = prefixes(rest, afi, (afi, safi) in ctx.addpath) if afi in (1, 2) and safi in (1, 2) else []
            parts.append(f"MP_UNREACH_NLRI {fam(afi, safi)} withdraw {fmt_prefixes(pf)}")
        elif code == 16:
            parts.append("EXTENDED_COMMUNITIES " + " ".join(ext_comm(val[i:i + 8]) for i in range(0, len(val), 8)))
        elif code == 17:
            parts.append(f"AS4_PATH {as_path(val, 4)}")
        elif code == 18:
            parts.append(f"AS4_AGGREGATOR {struct.unpack('!I', val[:4])[0]} {ip4(val[4:8])}")
        elif code == 32:
            ls = [":".join(str(x) for x in struct.unpack("!III", val[i:i + 12])) for i in range(0, len(val), 12)]
            parts.append("LARGE_COMMUNITIES " + " ".join(ls))
        elif code == 35:
            parts.append(f"OTC {struct.unpack('!I', val)[0]}")
        else:
            parts.append(f"ATTR{code}(flags 0x{flags:02x}) {val.hex()}")
    return "UPDATE " + "; ".join(parts)


NOTIF_CODES = {1: "Message Header Error", 2: "OPEN Message Error", 3: "UPDATE Message Error",
               4: "Hold Timer Expired", 5: "FSM Error", 6: "Cease", 7: "ROUTE-REFRESH Message Error"}
CEASE = {1: "Maximum Number of Prefixes Reached", 2: "Administrative Shutdown", 3: "Peer De-configured",
         4: "Administrative Reset", 5: "Connection Rejected", 6: "Other Configuration Change",
         7: "Connection Collision Resolution", 8: "Out of Resources", 9: "Hard Reset",
         10: "BFD Down"}


def describe_notification(msg):
    code, sub = msg[19], msg[20]
    data = msg[21:]
    name = NOTIF_CODES.get(code, f"code {code}")
    subname = CEASE.get(sub, f"subcode {sub}") if code == 6 else f"subcode {sub}"
    s = f"NOTIFICATION {name} ({code}) / {subname} ({sub})"
    if code == 6 and sub == 9 and len(data) >= 2:  # RFC 8538 Hard Reset wraps another notification
        icode, isub = data[0], data[1]
        iname = CEASE.get(isub, isub) if icode == 6 else isub
        s += f", wraps {NOTIF_CODES.get(icode, icode)} ({icode}) / {iname} ({isub})"
        code, sub, data = icode, isub, data[2:]
    if code == 6 and sub in (2, 4) and data:  # RFC 9003 shutdown communication
        ln = data[0]
        txt = data[1:1 + ln].decode("utf-8", errors="replace")
        s += f", shutdown communication ({ln} octets) {txt!r}"
        if len(data) > 1 + ln:
            s += f", trailing {data[1 + ln:].hex()}"
    elif data:
        s += f", data {data.hex()}"
    return s


def describe_route_refresh(msg):
    afi, sub, safi = struct.unpack("!HBB", msg[19:23])
    subn = {0: "normal request", 1: "BoRR (begin of route refresh)", 2: "EoRR (end of route refresh)"}
    return f"ROUTE-REFRESH {fam(afi, safi)} subtype {sub} {subn.get(sub, '')}".rstrip()


def describe(msg, ctx):
    t = msg[18]
    try:
        if t == 1:
            o = Open(msg)
            hdr = f"OPEN version {o.version}, my-AS {o.my_as}, hold {o.hold}s, id {o.bgp_id}"
            if o.ext_params:
                hdr += ", RFC 9072 extended optional parameters"
            return hdr + "; capabilities: " + "; ".join(o.describe_caps())
        if t == 2:
            return describe_update(msg, ctx)
        if t == 3:
            return describe_notification(msg)
        if t == 4:
            return "KEEPALIVE"
        if t == 5:
            return describe_route_refresh(msg)
    except Exception as e:  # keep going, the hex is what matters
        return f"{MSG_TYPES.get(t, t)} (could not describe: {e!r})"
    return f"unknown message type {t}"


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------


def yesno(b):
    return "yes" if b else "no"


def fam_list(s):
    return ",".join(fam(a, b) for a, b in sorted(s)) or "none"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pcap", nargs="+")
    ap.add_argument("-o", "--outdir", required=True)
    ap.add_argument("--meta", help="capture.meta.json written by capture.sh")
    ap.add_argument("--date", help="capture date for the header (default: from meta)")
    args = ap.parse_args()

    meta = {"speakers": {}, "sessions": [], "captured": args.date or "unknown date", "tool": "capture.sh"}
    if args.meta:
        with open(args.meta) as f:
            meta.update(json.load(f))
    if args.date:
        meta["captured"] = args.date

    def norm(a):
        return str(ipaddress.ip_address(a))

    speakers = {norm(k): v for k, v in meta["speakers"].items()}
    tags = {frozenset([norm(s["a"]), norm(s["b"])]): s["tag"] for s in meta["sessions"]}

    conns = []
    for pcap in args.pcap:
        conns.extend(reassemble(pcap))
    per_session = OrderedDict()
    for conn in conns:
        flows = [f for f in conn.flows.values() if f is not None]
        streams = {}
        for f in flows:
            data, stats = f.stream()
            where = f"{f.src}:{f.sport} -> {f.dst}:{f.dport}"
            msgs = split_messages(data, where)
            streams[(f.src, f.sport)] = (f, msgs, stats)
        if not any(m for _f, m, _s in streams.values()):
            continue
        key = frozenset([conn.client[0], conn.server[0]])
        per_session.setdefault(key, []).append((conn, streams))

    os.makedirs(args.outdir, exist_ok=True)
    written = []
    for key, conn_list in per_session.items():
        for ci, (conn, streams) in enumerate(conn_list):
            opens = {}
            for (src, _sport), (_f, msgs, _st) in streams.items():
                for m in msgs:
                    if m[18] == 1:
                        opens[src] = Open(m)
                        break
            for (src, sport), (f, msgs, stats) in streams.items():
                if not msgs:
                    continue
                dst, dport = f.dst, f.dport
                sp_src = speakers.get(src, {"slug": src.replace(":", "-"), "desc": src, "instance": src})
                sp_dst = speakers.get(dst, {"slug": dst.replace(":", "-"), "desc": dst, "instance": dst})
                tag = tags.get(key, "session")
                suffix = "" if len(conn_list) == 1 else f"_conn{ci + 1}"
                name = f"{sp_src['slug']}_to_{sp_dst['slug']}_{tag}{suffix}.txt"
                o_src, o_dst = opens.get(src), opens.get(dst)
                external = bool(o_src and o_dst and o_src.asn != o_dst.asn)
                ctx = Ctx(o_src, o_dst, external)
                transport = "IPv6" if ":" in src else "IPv4"
                asn_src = o_src.asn if o_src else "?"
                asn_dst = o_dst.asn if o_dst else "?"
                kind = "eBGP" if external else "iBGP"
                my_as_note = ""
                if o_src and o_src.my_as != o_src.asn:
                    my_as_note = f" (OPEN my-AS field {o_src.my_as})"
                all_addpath_fams = set()
                if o_src and o_dst:
                    all_addpath_fams = set(o_src.addpath()) | set(o_dst.addpath())
                ap_txt = ", ".join(f"{fam(*af)} {yesno(af in ctx.addpath)}"
                                   for af in sorted(set(ctx.families) | all_addpath_fams)) or "none"
                enhe_txt = ", ".join(f"{fam(a, s)} over {AFI.get(n, n)}" for a, s, n in sorted(ctx.enhe)) or "no"
                counts = Counter(MSG_TYPES.get(m[18], f"type{m[18]}") for m in msgs)
                lines = [
                    f"# source: {sp_src['desc']} -> {sp_dst['desc']}; captured by {meta.get('tool', 'capture.sh')} "
                    f"on {meta['captured']}",
                    f"# speakers: {sp_src.get('instance', src)} -> {sp_dst.get('instance', dst)}",
                    f"# session: {kind} AS{asn_src}{my_as_note} -> AS{asn_dst}, {transport} transport "
                    f"[{src}]:{sport} -> [{dst}]:{dport}, 4-octet AS negotiated: {yesno(ctx.as4)}, "
                    f"add-path rx (path identifiers in NLRI sent in this direction): {ap_txt}, "
                    f"extended messages: {yesno(ctx.ext_msg)}, extended next hop: {enhe_txt}, "
                    f"families: {fam_list(ctx.families)}",
                    f"# context: four_octet_as={yesno(ctx.as4)} extended_messages={yesno(ctx.ext_msg)} "
                    f"add_path={fam_list(ctx.addpath)} external={yesno(external)} "
                    f"extended_next_hop={','.join(f'{fam(a, s)}:{AFI.get(n, n)}' for a, s, n in sorted(ctx.enhe)) or 'none'} "
                    f"families={fam_list(ctx.families)}",
                    "# messages: " + ", ".join(f"{t} {counts[t]}" for t in MSG_TYPES.values() if counts[t]),
                ]
                if len(conn_list) > 1:
                    lines.append(f"# TCP connection {ci + 1} of {len(conn_list)} for this pair of speakers")
                if stats:
                    lines.append("# tcp reassembly: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
                for m in msgs:
                    lines.append("# " + describe(m, ctx))
                    lines.append(f"{MSG_TYPES.get(m[18], 'type%d' % m[18])} {m.hex()}")
                path = os.path.join(args.outdir, name)
                with open(path, "w") as out:
                    out.write("\n".join(lines) + "\n")
                written.append((name, counts))
    for name, counts in written:
        print(f"{name}: " + ", ".join(f"{t} {counts[t]}" for t in MSG_TYPES.values() if counts[t]))
    if not written:
        sys.exit("no BGP messages found")


if __name__ == "__main__":
    main()
