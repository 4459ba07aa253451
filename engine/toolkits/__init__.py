"""Built-in toolkits: packages that expose a module-level ``toolkit``.

Load one with ``engine.tools.load_toolkits(["engine.toolkits.code_review"])``.
"""
