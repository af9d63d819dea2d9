"""The engine: sampling, the decode step, the token loop, continuous batching, speculative decoding, and the
placement of a model over several devices. It imports only the bottom layer (model, checkpoint, tokenizer).
"""
