"""tuneline's training engine: `python -m engine train --spec SPEC.json`.

The TypeScript activities spawn it and read JSON-lines events from its stdout (the contract is
`schemas/engine.ts`). It knows nothing of Temporal.
"""
