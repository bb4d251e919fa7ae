import json, random, sys
random.seed(int(sys.argv[1]))
users=['u1','u2','u3']
lines=[]; t=0
for i in range(400):
    t += random.choice([1,2,3,5,8,13])
    u=random.choice(users); k=random.random()
    base={"kind":"Event","auditID":"e%d"%i,"stage":"ResponseComplete","user":{"username":u},"stageTimestamp":"2026-12-05T%02d:%02d:%02d.000000Z"%(10+t//3600,(t//60)%60,t%60)}
    if k<0.35: base.update({"verb":"get","requestURI":"/api/v1/pods","objectRef":{"resource":"pods"},"responseStatus":{"code":403}})
    elif k<0.65: n=random.choice(['a','b','c','d','e','f']); base.update({"verb":"get","requestURI":"/api/v1/namespaces/p/secrets/"+n,"objectRef":{"resource":"secrets","namespace":"p","name":n},"responseStatus":{"code":200}})
    elif k<0.75: base.update({"verb":"create","requestURI":"/apis/rbac.authorization.k8s.io/v1/namespaces/p/rolebindings","objectRef":{"resource":"rolebindings","namespace":"p"},"responseStatus":{"code":201}})
    elif k<0.85: base.update({"verb":"create","requestURI":"/api/v1/namespaces/p/pods/x/exec","objectRef":{"resource":"pods","namespace":"p","name":"x","subresource":"exec"},"responseStatus":{"code":101}})
    else: base.update({"verb":"list","requestURI":"/api/v1/configmaps","objectRef":{"resource":"configmaps"},"responseStatus":{"code":200}})
    lines.append(json.dumps(base))
open('s2.jsonl','w').write('\n'.join(lines)+'\n')
