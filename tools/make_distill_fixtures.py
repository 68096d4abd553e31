#!/usr/bin/env python3
"""Reference values for herd-distill's losses, computed with PyTorch autograd.

Writes tests/fixtures/distill/losses.json: fixed student and teacher logits,
labels, a top-k version of the teacher, and for every loss (cross-entropy,
forward KL, reverse KL, generalised JSD, skew KL) the summed loss and its
gradient with respect to the student's logits, for the full teacher and the
top-k teacher (k entries plus one "rest" bucket holding the teacher's tail
mass and the student's mass outside the k ids).

The formulas are written here independently of the Rust code, in float64:
    q = softmax(s / T), p = softmax(t / T)   (or the k + 1 buckets)
    loss = (1 - w) * CE(s, label) + w * T^2 * D(p, q)    (CE alone for "ce")
Run: python3 tools/make_distill_fixtures.py   (needs torch)
"""
import json
import os

import torch

torch.manual_seed(0)
N, V, K = 4, 13, 5
T, W = 1.7, 0.8
BETA, ALPHA = 0.3, 0.2

student = (torch.randn(N, V) * 2.0).float()
teacher = (torch.randn(N, V) * 2.5).float()
labels = torch.randint(0, V, (N,))


def topk_teacher():
    logp = torch.log_softmax(teacher.double() / T, -1)
    ids = torch.topk(logp, K, -1).indices
    lps = torch.gather(logp, 1, ids).float()
    mask = torch.ones(N, V, dtype=torch.bool)
    mask.scatter_(1, ids, False)
    tail = (logp.exp() * mask).sum(-1).float()
    return ids, lps, tail, mask


IDS, LPS, TAIL, REST = topk_teacher()


def divergence(kind, logp, logq):
    p, q = logp.exp(), logq.exp()

    def xlog(x, lx, ly):
        return torch.where(x > 0, x * (lx - ly), torch.zeros_like(x))

    if kind == "fkl":
        return xlog(p, logp, logq).sum(-1)
    if kind == "rkl":
        return xlog(q, logq, logp).sum(-1)
    if kind == "jsd":
        logm = torch.log(BETA * p + (1 - BETA) * q)
        return BETA * xlog(p, logp, logm).sum(-1) + (1 - BETA) * xlog(q, logq, logm).sum(-1)
    if kind == "skl":
        logm = torch.log(ALPHA * p + (1 - ALPHA) * q)
        return xlog(p, logp, logm).sum(-1)
    raise ValueError(kind)


def buckets(s, sparse):
    logq = torch.log_softmax(s / T, -1)
    if not sparse:
        return torch.log_softmax(teacher.double() / T, -1), logq
    logq_top = torch.gather(logq, 1, IDS)
    logq_rest = torch.logsumexp(logq.masked_fill(~REST, float("-inf")), -1, keepdim=True)
    logp = torch.cat([LPS.double(), torch.log(TAIL.double()).unsqueeze(1)], 1)
    return logp, torch.cat([logq_top, logq_rest], 1)


def case(kind, sparse):
    s = student.double().clone().requires_grad_(True)
    ce = -torch.gather(torch.log_softmax(s, -1), 1, labels.unsqueeze(1)).squeeze(1)
    if kind == "ce":
        loss = ce.sum()
    else:
        logp, logq = buckets(s, sparse)
        loss = ((1 - W) * ce + W * T * T * divergence(kind, logp, logq)).sum()
    loss.backward()
    return {"loss": loss.item(), "grad": s.grad.flatten().tolist()}


out = {
    "n": N,
    "vocab": V,
    "k": K,
    "temperature": T,
    "kd_weight": W,
    "beta": BETA,
    "alpha": ALPHA,
    "student": student.flatten().tolist(),
    "teacher": teacher.flatten().tolist(),
    "labels": labels.tolist(),
    "topk_ids": IDS.flatten().tolist(),
    "topk_logprobs": LPS.flatten().tolist(),
    "topk_tail": TAIL.tolist(),
    "cases": {
        f"{kind}/{'topk' if sparse else 'full'}": case(kind, sparse)
        for kind in ["ce", "fkl", "rkl", "jsd", "skl"]
        for sparse in [False, True]
    },
}
path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "distill", "losses.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
print("wrote", os.path.normpath(path))
