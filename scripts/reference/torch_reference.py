"""PyTorch reference: transformers BertForSequenceClassification built from a candor
model's config.json and tokenizer.json with fresh weights, trained on split files with a plain
AdamW recipe (warm-up, linear decay, batch 32, clipping 1, optional token masking);
prints per-epoch accuracies and the test accuracy of the epoch of lowest validation loss.

Usage: PYTHON torch_reference.py SPLIT_DIR CANDOR_MODEL_DIR [LR EPOCHS SEED MASK_PROB]
(PYTHON: the interpreter scripts/python-env.sh prints; CANDOR_TORCH_THREADS: torch threads, 1;
CANDOR_TORCH_BATCH: batch size, 32; CANDOR_TORCH_MAX_LENGTH: word pieces kept per text, the
model's candor.max_length or 128. A config without the data's labels, such as all-MiniLM-L6-v2's,
gets a head for the training split's labels.)
Each epoch line ends with its training examples/s (the training loop alone).
"""
import json,sys,random,math,copy,time
import torch
from transformers import BertConfig,BertForSequenceClassification,get_linear_schedule_with_warmup
from tokenizers import Tokenizer
import os
torch.set_num_threads(int(os.environ.get("CANDOR_TORCH_THREADS","1")))
split,model_dir=sys.argv[1],sys.argv[2]
lr=float(sys.argv[3]) if len(sys.argv)>3 else 5e-4
epochs=int(sys.argv[4]) if len(sys.argv)>4 else 6
seed=int(sys.argv[5]) if len(sys.argv)>5 else 42
mask_p=float(sys.argv[6]) if len(sys.argv)>6 else 0.0
torch.manual_seed(seed); random.seed(seed)
cfg=json.load(open(f"{model_dir}/config.json"))
config=BertConfig(**{k:v for k,v in cfg.items() if k!="candor"})
max_length=int(os.environ.get("CANDOR_TORCH_MAX_LENGTH",cfg.get("candor",{}).get("max_length",128)))
tok=Tokenizer.from_file(f"{model_dir}/tokenizer.json"); tok.no_padding(); tok.enable_truncation(max_length)
labels=[config.id2label[i] for i in range(config.num_labels)] if isinstance(list(config.id2label.keys())[0],int) else [config.id2label[str(i)] for i in range(config.num_labels)]
L=lambda f:[json.loads(l) for l in open(f"{split}/{f}.jsonl")]
data_labels=sorted({str(r["label"]) for r in L("train")})
if not set(data_labels)<=set(labels):
    labels=data_labels; config.num_labels=len(labels)
    config.id2label={i:l for i,l in enumerate(labels)}; config.label2id={l:i for i,l in enumerate(labels)}
def enc(rows): return [(tok.encode(r["text"]).ids,labels.index(str(r["label"]))) for r in rows]
tr,va,te=enc(L("train")),enc(L("val")),enc(L("test"))
model=BertForSequenceClassification(config)
mask_id=tok.token_to_id("[MASK]")
def batchify(rows,masking=False):
    m=max(len(r[0]) for r in rows)
    ids=torch.zeros(len(rows),m,dtype=torch.long); att=torch.zeros(len(rows),m,dtype=torch.long)
    for i,(r,_) in enumerate(rows):
        r=list(r)
        if masking and mask_p>0:
            r=[t if (j==0 or j==len(r)-1 or random.random()>=mask_p) else mask_id for j,t in enumerate(r)]
        ids[i,:len(r)]=torch.tensor(r); att[i,:len(r)]=1
    return ids,att,torch.tensor([r[1] for r in rows])
def evaluate(rows):
    model.eval(); loss=0; c=0
    with torch.no_grad():
        for i in range(0,len(rows),128):
            ids,att,y=batchify(rows[i:i+128]); out=model(input_ids=ids,attention_mask=att)
            loss+=torch.nn.functional.cross_entropy(out.logits,y,reduction="sum").item(); c+=(out.logits.argmax(1)==y).sum().item()
    return loss/len(rows),c/len(rows)
nd=["bias","LayerNorm.weight"]
params=[{"params":[p for n,p in model.named_parameters() if not any(x in n for x in nd)],"weight_decay":0.01},{"params":[p for n,p in model.named_parameters() if any(x in n for x in nd)],"weight_decay":0.0}]
opt=torch.optim.AdamW(params,lr=lr)
bs=int(os.environ.get("CANDOR_TORCH_BATCH","32")); steps=math.ceil(len(tr)/bs)*epochs
sch=get_linear_schedule_with_warmup(opt,int(0.1*steps),steps)
best=(1e9,None,0); t0=time.time()
for ep in range(1,epochs+1):
    model.train(); order=list(range(len(tr))); random.shuffle(order); t1=time.time()
    for i in range(0,len(order),bs):
        ids,att,y=batchify([tr[j] for j in order[i:i+bs]],True)
        loss=model(input_ids=ids,attention_mask=att,labels=y).loss
        loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(),1.0); opt.step(); sch.step(); opt.zero_grad()
    rate=len(tr)/(time.time()-t1)
    trl,tra=evaluate(tr); vl,vacc=evaluate(va); tl,tacc=evaluate(te)
    print(f"epoch {ep}: train {tra*100:.1f} val {vacc*100:.1f} ({vl:.3f}) test {tacc*100:.1f} [{time.time()-t0:.0f}s] examples/s {rate:.0f}",flush=True)
    if vl<best[0]: best=(vl,tacc,ep)
print(f"chosen by val loss: epoch {best[2]} test {best[1]*100:.1f}")
