"""Hand model: MANO-format files (licensed or our open model), joint orders, pose sampling."""
