"""The aging benchmark (an interface: it runs any registered method through the evaluators).

``aging`` (test split: ages, identity, guards, edit size), ``lag`` (the real-person protocol),
``null_edits`` (what margins are calibrated on), ``grid`` (the picture grid) and the
``faceage bench`` commands. Nothing at run time imports this package.
"""
