"""Report generation from an ECG: greedy and beam search (DESIGN 1.4, 4).

Each step feeds only the newest token: the causal text encoder keeps its Hugging Face key/value
cache, and the caption decoder caches its self-attention keys/values and the cross-attention
keys/values of the ECG tokens. Because the text encoder is causal, the states of earlier positions
never change as the prefix grows, so every cached entry stays exact; beams reorder all caches.
"""
from __future__ import annotations

import torch
from torch import Tensor


class _Stepper:
    """Feeds a growing batch of prefixes through text encoder + decoder, one new token at a time."""

    def __init__(self, model, ecg_tokens: Tensor, use_cache: bool = True):
        self.model, self.ecg_tokens, self.use_cache = model, ecg_tokens, use_cache
        self.state, self.text_cache = {}, None
        self.banned = model.text_encoder.never_generated_ids

    def log_probs(self, seq: Tensor) -> Tensor:
        """(R, t) prefixes -> (R, V) log-probabilities of the next token. Every call after the first
        must extend the previous prefixes (reordered with ``reorder``) by exactly one token."""
        first = "cross" not in self.state
        enc = self.model.text_encoder
        if not self.use_cache:  # reference path: re-encode the whole prefix
            states = enc.states(seq)
            states = states if first else states[:, -1:]
        else:
            states, self.text_cache = enc.step(seq if first else seq[:, -1:], self.text_cache)
        h = self.model.decoder.hidden(states, self.ecg_tokens if first else None, self.state)
        logits = self.model.decoder.token_logits(h[:, -1]).float()
        logits[:, self.banned] = float("-inf")
        return logits.log_softmax(dim=-1)

    def reorder(self, index: Tensor) -> None:
        self.model.decoder.reorder_state(self.state, index)
        if self.text_cache is not None:
            self.text_cache.reorder_cache(index)


@torch.no_grad()
def greedy(model, ecg: Tensor, max_len: int, use_cache: bool = True) -> list[list[int]]:
    enc = model.text_encoder
    stepper = _Stepper(model, model.encode_ecg(ecg)["tokens"], use_cache)
    seq = torch.full((ecg.shape[0], 1), enc.bos_id, dtype=torch.long, device=ecg.device)
    done = torch.zeros(ecg.shape[0], dtype=torch.bool, device=ecg.device)
    for _ in range(max_len - 1):
        nxt = stepper.log_probs(seq).argmax(dim=-1)
        nxt = nxt.masked_fill(done, enc.pad_id)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        done |= nxt == enc.end_id
        if bool(done.all()):
            break
    return [_strip(row.tolist(), enc.end_id, enc.pad_id) for row in seq[:, 1:]]


@torch.no_grad()
def beam_search(model, ecg: Tensor, beams: int, max_len: int, length_penalty: float = 1.0,
                use_cache: bool = True) -> list[list[int]]:
    """Standard beam search; a finished hypothesis scores sum(log p) / length ** length_penalty.
    ``use_cache=False`` re-encodes each prefix with the text encoder (the slow reference path)."""
    enc = model.text_encoder
    b, k = ecg.shape[0], beams
    stepper = _Stepper(model, model.encode_ecg(ecg)["tokens"].repeat_interleave(k, dim=0), use_cache)
    seq = torch.full((b * k, 1), enc.bos_id, dtype=torch.long, device=ecg.device)
    scores = torch.full((b, k), float("-inf"), device=ecg.device)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    closed = [False] * b
    for step in range(1, max_len):
        logp = stepper.log_probs(seq).view(b, k, -1)
        vocab = logp.shape[-1]
        total = (scores[..., None] + logp).view(b, -1)
        top_scores, top_index = total.topk(2 * k, dim=-1)
        rows, tokens, new_scores = [], [], []
        for i in range(b):
            picked = []
            for rank, (s, j) in enumerate(zip(top_scores[i].tolist(), top_index[i].tolist())):
                if len(picked) == k:
                    break
                beam, token = divmod(j, vocab)
                if closed[i]:  # keep the shape; these rows are ignored
                    picked.append((i * k + beam, enc.pad_id, float("-inf")))
                elif token == enc.end_id:
                    if rank < k and s > float("-inf"):
                        ids = seq[i * k + beam, 1:].tolist()
                        finished[i].append((s / (len(ids) + 1) ** length_penalty, ids))
                else:
                    picked.append((i * k + beam, token, s))
            while len(picked) < k:
                picked.append((i * k, enc.pad_id, float("-inf")))
            for row, token, s in picked:
                rows.append(row), tokens.append(token), new_scores.append(s)
            # done when k hypotheses are finished and no live beam can still beat the worst of them
            if not closed[i] and len(finished[i]) >= k:
                best_alive = max(s for _, _, s in picked) / (step + 1) ** length_penalty
                closed[i] = best_alive <= sorted(f[0] for f in finished[i])[-k]
        index = torch.tensor(rows, device=ecg.device)
        seq = torch.cat([seq[index], torch.tensor(tokens, device=ecg.device)[:, None]], dim=1)
        scores = torch.tensor(new_scores, device=ecg.device).view(b, k)
        stepper.reorder(index)
        if all(closed):
            break
    for i in range(b):  # live beams at max_len compete with the finished ones
        for beam in range(k):
            if not closed[i] and scores[i, beam] > float("-inf"):
                ids = seq[i * k + beam, 1:].tolist()
                finished[i].append((float(scores[i, beam]) / len(ids) ** length_penalty, ids))
    return [_strip(max(f, key=lambda h: h[0])[1], enc.end_id, enc.pad_id) for f in finished]


def _strip(ids: list[int], end_id: int, pad_id: int) -> list[int]:
    if end_id in ids:
        ids = ids[: ids.index(end_id)]
    return [i for i in ids if i != pad_id]


def generate_ids(model, ecg: Tensor, beams: int = 3, max_len: int = 128) -> list[list[int]]:
    """Preprocessed (B, 12, n) -> generated token ids per ECG (without [BOS] and the final [CLS])."""
    if beams < 1 or max_len < 2:
        raise ValueError("beams must be >= 1 and max_len >= 2")
    return greedy(model, ecg, max_len) if beams == 1 else beam_search(model, ecg, beams, max_len)
