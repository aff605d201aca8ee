"""Backbones, heads and ReID models."""
