from lib import *
import time, subprocess, os, random
REL="/work/wt-review/.build/release/pxguard"
def timeit(name, rv, mutate=False, config=None, raw=None):
    data = raw if raw is not None else json.dumps(rv, separators=(",",":"))
    path=f"/tmp/pxguard-perf-{name}.json"; open(path,"w").write(data)
    args=[REL,"review"]+(["--config",config] if config else [])+(["--mutate"] if mutate else [])+[path]
    t=time.time(); p=subprocess.run(["/usr/bin/time","-f","%M KB",*args],capture_output=True); dt=time.time()-t
    out=p.stdout
    try: r=json.loads(out)["response"]; s=short(r)[:70]; plen=len(r.get("patch",""))
    except Exception: s=f"rc={p.returncode} {out[:100]} {p.stderr[-200:]}"; plen=0
    print(f"{name:34s} size={len(data)/1048576:.2f}MiB t={dt:.3f}s mem={p.stderr.decode().strip().splitlines()[-1] if p.stderr else ''} patch={plen} {s}")
def ip(i): return f"70.0.{(i>>8)&255}.{i&255}/32"
T = lambda cidr, exc=None: {"ipBlock": {"cidr": cidr, **({"except": exc} if exc is not None else {})}}
eg = lambda rules: {"podSelector":{}, "policyTypes":["Egress"], "egress":rules}
# 1: 40k excepts (all but one address)
exc=[ip(i) for i in range(1,65536)][:40000]
timeit("excepts40k", review("NetworkPolicy","CREATE",np("p",eg([{"to":[T("70.0.0.0/16",exc)]}]))))
timeit("excepts40k_shuffled", review("NetworkPolicy","CREATE",np("p",eg([{"to":[T("70.0.0.0/16",random.sample(exc,len(exc)))]}]))))
# 2: many rules x excepts
rules=[{"to":[T("70.0.0.0/16",[ip(j) for j in range(1,200)])]} for i in range(150)]
timeit("rules150x200", review("NetworkPolicy","CREATE",np("p",eg(rules))))
# 3: many peers each 0/0
peers=[T("0.0.0.0/0",["70.0.0.0/17", ip(40000+i)]) for i in range(20000)]
timeit("peers20k", review("NetworkPolicy","CREATE",np("p",eg([{"to":peers}]))))
# 4: huge port list
ports=[{"protocol":"TCP","port":p} for p in range(1,9001)]*6
timeit("ports54k", review("NetworkPolicy","CREATE",np("p",eg([{"to":[T("70.0.0.0/16")],"ports":ports}]))))
ports2=[{"protocol":"TCP","port":"n%d"%i} for i in range(60000)]
timeit("named60k", review("NetworkPolicy","CREATE",np("p",eg([{"to":[T("70.0.0.0/16")],"ports":ports2}]))))
# 5: rules with many ports each, many peers (cross product in repair?)
ports3=[{"protocol":"TCP","port":8000+i,"endPort":9100+i} for i in range(300)]
peers3=[T(f"{10+i%200}.{i//200}.0.0/16") for i in range(300)]+[T("70.0.0.0/16")]
timeit("ports300xpeers300", review("NetworkPolicy","CREATE",np("p",eg([{"to":peers3,"ports":ports3}]))))
timeit("ports300xpeers300_mutate", review("NetworkPolicy","CREATE",np("p",eg([{"to":peers3,"ports":ports3}]))), mutate=True, config="/work/wt-review/findings/tools/repair.yaml")
timeit("excepts40k_mutate", review("NetworkPolicy","CREATE",np("p",eg([{"to":[T("0.0.0.0/0",exc)]}]))), mutate=True, config="/work/wt-review/findings/tools/repair.yaml")
rules4=[{"to":[T("0.0.0.0/0",[ip(j) for j in range(1,100)])],"ports":[{"port":8000+i%500,"endPort":9500}]} for i in range(400)]
timeit("rules400_mutate", review("NetworkPolicy","CREATE",np("p",eg(rules4))), mutate=True, config="/work/wt-review/findings/tools/repair.yaml")
rules5=[{} for i in range(150000)]
timeit("emptyrules150k_mutate", review("NetworkPolicy","CREATE",np("p",eg(rules5))), mutate=True, config="/work/wt-review/findings/tools/repair.yaml")
timeit("emptyrules150k", review("NetworkPolicy","CREATE",np("p",eg(rules5))))
# 6: R3 normalised compare with huge spec
B="block-9001-for-non-system-users"
big={"podSelector":{},"policyTypes":["Egress"],"egress":[{"to":[{"ipBlock":{"cidr":"0.0.0.0/0","except":["70.0.0.0/16"]}}]}], **{f"x{i}":None for i in range(150000)}}
timeit("r3_nullmembers150k", review("NetworkPolicy","UPDATE",np(B,big,labels={"app.kubernetes.io/managed-by":"pxguard"}),old=np(B,big)))
# 7: externalIPs
svc={"kind":"Service","apiVersion":"v1","metadata":{"name":"s","namespace":"team-a"},"spec":{"externalIPs":[f"80.{i>>16&255}.{i>>8&255}.{i&255}" for i in range(150000)]}}
old={"kind":"Service","apiVersion":"v1","metadata":{"name":"s","namespace":"team-a"},"spec":{"externalIPs":[f"70.0.{i>>8&255}.{i&255}" for i in range(60000)]}}
timeit("extips150k_update", review("Service","UPDATE",svc, old=old))
# 8: deep nesting
depth=1000000
raw=json.dumps(review("Pod","CREATE",{"kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[]}}))
raw=raw.replace('"containers": []','"containers": '+"["*depth+"]"*depth)
timeit("deep1M", None, raw=raw)
raw2=json.dumps(review("NetworkPolicy","UPDATE",np(B,{"podSelector":{}},labels={"app.kubernetes.io/managed-by":"pxguard"}),old=None))
raw2=raw2.replace('"podSelector": {}','"podSelector": {}, "zz": '+'{"a":'*300000+'1'+'}'*300000)
timeit("deep_obj_r3", None, raw=raw2)
