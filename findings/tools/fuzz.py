import sys, random
exec(open("/work/wt-review/findings/tools/repair2.py").read().split("for n,s in cases.items():\n    obj=np")[0])
random.seed(int(sys.argv[1]) if len(sys.argv)>1 else 1)
V4=["70.0.0.0/16","70.0.0.0/8","70.0.128.0/17","70.0.5.0/24","0.0.0.0/0","64.0.0.0/3","70.1.0.0/16","70.0.0.0/15"]
V6=["::/0","fd00::/16","fd00:70::/64","fd00:70::/65","fd00:70:0:0:8000::/65","2001::/16"]
def rnd_block():
    c = random.choice(V4+V6); n = ipaddress.ip_network(c)
    exc=[]
    for _ in range(random.randint(0,3)):
        # random strict subnet
        if n.prefixlen >= n.max_prefixlen-1: break
        pl = random.randint(n.prefixlen+1, min(n.prefixlen+12, n.max_prefixlen))
        sub = list(itertools.islice(n.subnets(new_prefix=pl), 0, 1))[0]
        off = random.randint(0, 2**(pl-n.prefixlen)-1)
        base = int(n.network_address) + off*(2**(n.max_prefixlen-pl))
        exc.append(str(ipaddress.ip_network((type(n.network_address)(base), pl))))
        if random.random()<0.3: exc.append(str(ipaddress.ip_network("70.0.0.0/16" if n.version==4 and ipaddress.ip_network("70.0.0.0/16").subnet_of(n) and n.prefixlen<16 else str(sub))))
    exc=[e for e in exc if ipaddress.ip_network(e).prefixlen>n.prefixlen]
    b={"cidr":c}
    if exc: b["except"]=sorted(set(exc))
    return {"ipBlock":b}
def rnd_port():
    proto=random.choice(["TCP","TCP","UDP","SCTP",None])
    p={}
    if proto: p["protocol"]=proto
    k=random.random()
    if k<0.2: pass
    elif k<0.3: p["port"]=random.choice(["http","px"])
    else:
        lo=random.choice([1,80,8999,9000,9001,9002,9003,9010,9022,9023,30000])
        p["port"]=lo
        if random.random()<0.5: p["endPort"]=random.choice([x for x in [9001,9002,9005,9022,9100,65535,lo] if x>=lo])
    return p
def rnd_rule():
    r={}
    if random.random()<0.8:
        to=[]
        for _ in range(random.randint(0,3)):
            to.append(rnd_block() if random.random()<0.75 else random.choice([{"podSelector":{"matchLabels":{"a":"b"}}},{"namespaceSelector":{}}]))
        r["to"]=to
    if random.random()<0.7: r["ports"]=[rnd_port() for _ in range(random.randint(0,3))]
    return r
bad_total=0
for it in range(int(sys.argv[2]) if len(sys.argv)>2 else 100):
    spec={"podSelector":{},"policyTypes":["Egress"],"egress":[rnd_rule() for _ in range(random.randint(1,3))]}
    obj=np("p",spec); m=run(review("NetworkPolicy","CREATE",obj),mutate=True,config=CFG)
    if "patch" not in m:
        v=run(review("NetworkPolicy","CREATE",obj),config=CFG)
        if not v.get("allowed"):
            print("NO PATCH BUT DENIED", json.dumps(spec)); bad_total+=1
        # also verify allowed ones really don't reach protected
        addrs,ports=points(spec)
        for ip in addrs:
            for proto in ("TCP","UDP","SCTP"):
                for port in ports:
                    if 1<=port<=65535 and allows(spec,ip,proto,port) and protected(ip,proto,port):
                        print("ALLOWED BUT REACHES", ip,proto,port,json.dumps(spec)); bad_total+=1; break
        continue
    try: new=jsonpatch.apply_patch(obj,json.loads(base64.b64decode(m["patch"])))
    except Exception as e: print("APPLY FAIL",e,json.dumps(spec)); bad_total+=1; continue
    errs=k8s_valid(new["spec"])
    v=run(review("NetworkPolicy","CREATE",new),config=CFG)
    if errs or not v.get("allowed"):
        print("INVALID/DENIED after repair", errs, short(v)[:100], json.dumps(spec)); bad_total+=1
    addrs,ports=points(spec); a2,p2=points(new["spec"]); addrs|=a2; ports|=p2
    for ip in addrs:
        for proto in ("TCP","UDP","SCTP"):
            for port in ports:
                if not 1<=port<=65535: continue
                o=allows(spec,ip,proto,port); n=allows(new["spec"],ip,proto,port)
                exp = bool(o) and not protected(ip,proto,port)
                if bool(n)!=exp:
                    print("MISMATCH",ip,proto,port,o,n,json.dumps(spec)[:300]); bad_total+=1; break
print("done bad=",bad_total)
