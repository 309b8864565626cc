"""Scoring prompts: COCO metrics and instance matching, the evaluation report, the discovery run summary."""
