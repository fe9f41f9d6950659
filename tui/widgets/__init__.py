"""The dashboard's panels, one feature each; every panel renders from a `RunView`."""
