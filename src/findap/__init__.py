"""findap: domain-adaptive post-training of LLMs (FinDAP), finance first."""

__version__ = "0.1.0"
