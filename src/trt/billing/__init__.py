"""Money: the ledger (kopecks, double entry, wallets, holds)."""
