"""findap.train"""
