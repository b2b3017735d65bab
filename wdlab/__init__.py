"""wdlab: decoupled weight decay, exactly as in Loshchilov & Hutter (ICLR 2019)."""
__version__ = "0.1.0"
