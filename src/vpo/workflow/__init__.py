"""The work VPO does on a library: scanning now, processing with policies next."""
