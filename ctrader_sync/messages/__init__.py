"""Message classes generated from ``protos/`` (cTrader Open API schema, release 91).

Never edit the ``*_pb2`` modules by hand: run ``scripts/generate_messages.py``.
The module names match the old SDK's, so
``from ctrader_sync.messages.OpenApiMessages_pb2 import ProtoOAVersionReq`` works
as ``from ctrader_open_api.messages.OpenApiMessages_pb2 import ...`` did.
"""
