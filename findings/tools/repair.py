from lib import *
import jsonpatch, base64, ipaddress, itertools, random, copy
CFG="/work/wt-review/findings/tools/repair.yaml"
NODES=[ipaddress.ip_network("70.0.0.0/16"), ipaddress.ip_network("fd00:70::/64")]
PROT={"TCP":[(9001,9022)],"UDP":[(9002,9002)],"SCTP":[(9001,9005)]}
def affects(spec):
    t = spec.get("policyTypes")
    if t: return "Egress" in t
    return bool(spec.get("egress"))
def allows(spec, ip, proto, port, podpeer=False):
    """ip: ipaddress obj; podpeer: destination is a selected pod (ignored here)."""
    if not affects(spec): return None
    for r in spec.get("egress") or []:
        r = r or {}
        ps = r.get("ports") or []
        pok = not ps
        for p in ps:
            p = p or {}
            if (p.get("protocol") or "TCP") != proto: continue
            if p.get("port") is None: pok = True; break
            if isinstance(p["port"], str): continue
            lo = p["port"]; hi = p.get("endPort") or lo
            if lo <= port <= hi: pok = True; break
        if not pok: continue
        to = r.get("to") or []
        if not to: return True
        for peer in to:
            b = (peer or {}).get("ipBlock")
            if not b: continue
            n = ipaddress.ip_network(b["cidr"], strict=False)
            if ip.version != n.version or ip not in n: continue
            if any(ip.version == ipaddress.ip_network(e, strict=False).version and ip in ipaddress.ip_network(e, strict=False) for e in b.get("except") or []): continue
            return True
    return False
def points(spec):
    addrs=set()
    def add_net(n):
        for a in (n.network_address, n.broadcast_address):
            for d in (-1,0,1):
                try: addrs.add(a+d)
                except Exception: pass
    for n in NODES: add_net(n)
    for r in spec.get("egress") or []:
        for peer in (r or {}).get("to") or []:
            b=(peer or {}).get("ipBlock")
            if b:
                add_net(ipaddress.ip_network(b["cidr"],strict=False))
                for e in b.get("except") or []: add_net(ipaddress.ip_network(e,strict=False))
    addrs |= {ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("2001::1"), ipaddress.ip_address("70.0.5.5")}
    ports=set([1,65535,53,443,6443,8099])
    for pr in PROT.values():
        for lo,hi in pr: ports |= {lo-1,lo,lo+1,hi-1,hi,hi+1}
    for r in spec.get("egress") or []:
        for p in (r or {}).get("ports") or []:
            if p and isinstance(p.get("port"),int):
                lo=p["port"]; hi=p.get("endPort") or lo; ports |= {lo-1,lo,hi,hi+1}
    return addrs, ports
def protected(ip, proto, port):
    return any(ip.version==n.version and ip in n for n in NODES) and any(lo<=port<=hi for lo,hi in PROT.get(proto,[]))
def check(name, spec, save=False):
    obj = np("p", spec)
    rv = review("NetworkPolicy","CREATE",obj)
    m = run(rv, mutate=True, config=CFG, save=("repair-"+name if save else None))
    if "patch" not in m:
        print(f"{name:28s} no patch; validate:", short(run(rv, config=CFG))); return
    patch = json.loads(base64.b64decode(m["patch"]))
    try:
        new = jsonpatch.apply_patch(obj, patch)
    except Exception as e:
        print(f"{name:28s} PATCH APPLY FAILED {e}"); return
    v = run(review("NetworkPolicy","CREATE",new), config=CFG)
    addrs, ports = points(spec); a2,p2 = points(new["spec"]); addrs|=a2; ports|=p2
    bad=[]
    for ip in addrs:
        for proto in ("TCP","UDP","SCTP"):
            for port in ports:
                if not (1<=port<=65535): continue
                o = allows(spec, ip, proto, port); n = allows(new["spec"], ip, proto, port)
                exp = o and not protected(ip, proto, port) if o is not None else None
                if o is None: exp = None
                # expected: new == old minus protected (None = not isolating)
                if (n or False) != (exp or False) and not (o is None and n is None):
                    bad.append((str(ip),proto,port,o,n))
    print(f"{name:28s} validate-after: {short(v)[:60]} mismatches={len(bad)} {bad[:4]}")
    return new
T = lambda cidr, exc=None: {"ipBlock": {"cidr": cidr, **({"except": exc} if exc is not None else {})}}
eg = lambda rules, types=["Egress"]: {"podSelector":{}, "policyTypes":types, "egress":rules} if types else {"podSelector":{}, "egress":rules}
cases = {
 "all": eg([{}]),
 "null_rule": eg([None]),
 "v4_node_ports": eg([{"to":[T("70.0.0.0/16")],"ports":[{"protocol":"TCP","port":8000,"endPort":9010}]}]),
 "mixed_peers": eg([{"to":[T("0.0.0.0/0",["10.0.0.0/8"]),{"podSelector":{"matchLabels":{"a":"b"}}},T("::/0")],"ports":[{"protocol":"UDP"},{"protocol":"TCP","port":9005}]}]),
 "named_port": eg([{"to":[T("70.0.0.0/8")],"ports":[{"protocol":"TCP","port":"http"}]}]),
 "named_and_sel": eg([{"to":[T("70.0.0.0/8"),{"namespaceSelector":{}}],"ports":[{"protocol":"TCP","port":"http"}]}]),
 "to_only_selector_plus_empty": eg([{"to":[{"podSelector":{}}]},{"ports":[{"port":9001}]}]),
 "no_types": eg([{"to":[T("70.0.0.0/16",["70.0.1.0/24"])]}], None),
 "v4mapped_except": eg([{"to":[T("0.0.0.0/0",["::ffff:70.0.0.0/112"])]}]),
 "hostbits": eg([{"to":[T("70.0.3.3/15")]}]),
 "port_no_num": eg([{"to":[T("70.0.0.0/16")],"ports":[{"protocol":"SCTP"}]}]),
 "null_to_null_ports": eg([{"to":None,"ports":None}]),
 "dup_rules_many": eg([{"to":[T("70.0.0.0/24")]}]*3),
}
for n,s in cases.items(): check(n,s, save=n in ())
