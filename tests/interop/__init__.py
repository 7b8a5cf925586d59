"""Interop tier: QualityBridge through a second, independent OPC UA stack (node-opcua); marked `interop`.

The Node.js side (client.mjs, package.json and its lock file) lives next to the test; `npm ci` installs it here.
"""
