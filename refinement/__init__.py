"""refinement"""
