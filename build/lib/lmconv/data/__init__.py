"""The data stage: the corpus, its tokenizer, the probe set and the linguistic labels of its tokens."""
