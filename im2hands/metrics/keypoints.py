"""Keypoint metrics: MPJPE under two published protocols, and MRRPE.

The functions live in :mod:`im2hands.models.measures` (the models' validation uses them too);
this module is their place in the evaluation package. See that module for the protocols.
"""

from __future__ import annotations

from im2hands.models.measures import MIDDLE_MCP, WRIST, joint_errors, mpjpe_mcp_scaled, mpjpe_wrist, mrrpe

__all__ = [
    "WRIST",
    "MIDDLE_MCP",
    "joint_errors",
    "mpjpe_wrist",
    "mpjpe_mcp_scaled",
    "mrrpe",
]
