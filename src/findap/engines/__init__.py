"""Generation and scoring engines shared by eval, curate and distill."""
