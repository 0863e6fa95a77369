"""Mandate: LangGraph orchestration where identity is the control plane."""
