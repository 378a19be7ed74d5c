#!/usr/bin/env python3
"""Train the moekit-tiny byte-level BPE tokenizer (vocab 8192) on the train split.

Pre-tokenizer: ByteLevel(add_prefix_space=False, use_regex=True) (GPT-2 split regex),
decoder ByteLevel, special tokens <|endoftext|> (id 0, EOS/BOS/pad), <|im_start|>, <|im_end|>.
Training text: the train split of every domain (equal-ish sizes, ~4 MB each).

Usage:
  python tools/train/train_tokenizer.py --corpus work-data/corpus --out models/moekit-tiny
"""
import argparse
import json
import os

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

DOMAINS = ["python", "c", "swift", "english", "german", "french", "math"]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def iter_texts(corpus):
    for d in DOMAINS:
        with open(os.path.join(corpus, d, "train.jsonl")) as f:
            for line in f:
                yield json.loads(line)["text"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="work-data/corpus")
    ap.add_argument("--out", default="models/moekit-tiny")
    ap.add_argument("--vocab", type=int, default=8192)
    args = ap.parse_args()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=args.vocab, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(iter_texts(args.corpus), trainer=trainer)
    assert tok.token_to_id("<|endoftext|>") == 0
    assert tok.get_vocab_size() == args.vocab, tok.get_vocab_size()
    os.makedirs(args.out, exist_ok=True)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 1024,
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    # chars/token report per domain on a sample of train text
    for d in DOMAINS:
        with open(os.path.join(args.corpus, d, "heldout.jsonl")) as f:
            texts = [json.loads(l)["text"] for l in f][:20]
        n_ch = sum(len(t) for t in texts)
        n_tok = sum(len(e.ids) for e in tok.encode_batch(texts))
        print(f"{d}: {n_ch / n_tok:.2f} chars/token")


if __name__ == "__main__":
    main()
