import sys
sys.argv=[""]
exec(open("repair.py").read().split("for n,s in cases.items()")[0])
import ipaddress
def k8s_valid(spec):
    errs=[]
    for i,r in enumerate(spec.get("egress") or []):
        for p in (r or {}).get("ports") or []:
            if p.get("endPort") is not None:
                if not isinstance(p.get("port"),int): errs.append(f"r{i} endPort without numeric port")
                elif p["endPort"]<p["port"]: errs.append(f"r{i} endPort<port")
            if isinstance(p.get("port"),int) and not 1<=p["port"]<=65535: errs.append("port range")
        for peer in (r or {}).get("to") or []:
            b=peer.get("ipBlock")
            if b:
                if len(peer)>1: errs.append("ipBlock with selector")
                c=ipaddress.ip_network(b["cidr"],strict=False)
                for e in b.get("except") or []:
                    en=ipaddress.ip_network(e,strict=False)
                    if en.version!=c.version or not en.subnet_of(c) or en.prefixlen<=c.prefixlen: errs.append(f"except {e} not strict subset of {b['cidr']}")
            elif not peer: errs.append("empty peer")
    return errs
for n,s in cases.items():
    obj=np("p",s); m=run(review("NetworkPolicy","CREATE",obj),mutate=True,config=CFG)
    if "patch" not in m: continue
    new=jsonpatch.apply_patch(obj,json.loads(base64.b64decode(m["patch"])))
    e=k8s_valid(new["spec"])
    print(n, "rules:",len(new["spec"]["egress"]), "errs:", e[:3])
    if n in ("named_and_sel","mixed_peers"): print(json.dumps(new["spec"])[:900])
