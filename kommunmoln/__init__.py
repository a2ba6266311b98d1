"""kommunmoln: shared code for the CDK app, the Lambda validators and the use-case clients.

Only `names` (and the small, dependency-free modules the validators need) is packaged
into Lambda assets; client modules may import heavier libraries (ESDK, PKCS#11).
"""

__version__ = "0.1.0"
