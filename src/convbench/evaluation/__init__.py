"""Scoring a trained model on a test split."""
