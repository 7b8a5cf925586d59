// QualityBridge as seen by a second, independent OPC UA stack (node-opcua).
//
// tests/interop/test_interop_node_opcua.py runs this script and asserts on what it prints: one JSON object on stdout.
// One process per scenario group, so the ~1 s start-up of Node and node-opcua is paid once per group,
// not once per assertion. The script decides nothing: it records what the server answered, and pytest judges.
//
//   node client.mjs --scenario session|security|spc --endpoint opc.tcp://... --user U --password P
//                   --cert client.pem --key client.key.pem --application-uri urn:... --server-cert server.der
//                   --pki DIR [--operator-user U --operator-password P]
//                   [--untrusted-cert C --untrusted-key K --untrusted-application-uri urn:...]
//                   [--spc-target ORDER/OPERATION/CHARACTERISTIC/GAUGE --spc-value V [--await-planting]]
//
// session:  SignAndEncrypt + user name; browse the whole QualityBridge tree; read limits and units of every
//           characteristic; subscribe to one LastValue and report a measurement into it; a call with a
//           wrongly typed argument; HistoryRead of that LastValue across continuation points.
// security: the endpoints offered, a session on each; SecurityPolicy None; an untrusted client certificate; a wrong
//           password and an unknown user; an untrusted server certificate; two sessions on one secure channel;
//           a call by the given (Observer) user.
// spc:      subscribe at the Server object with an EventFilter that selects the SPC alarm's business keys (and
//           OfType SpcAlarmEventType in its where clause), report a value beyond the control limits, and record the
//           events received, field by field as selected. With --await-planting, once subscribed it prints
//           {"listening":true} on a line of its own and waits for one line on stdin (the caller's word that it has
//           reported a stream of its own, through another client) before reporting its value: the alarms of that
//           stream are recorded too, and they all precede the alarm of its own value. A second monitored item
//           records the same alarms as events of the SpcAlarmType conditions (OfType SpcAlarmType, ConditionId and
//           the condition's states selected).

import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

import { OPCUACertificateManager } from "node-opcua-certificate-manager";
import {
    ActivateSessionRequest,
    ApplicationType,
    AttributeIds,
    BrowseDirection,
    CreateSessionRequest,
    DataType,
    MessageSecurityMode,
    NodeClass,
    OPCUAClient,
    SecurityPolicy,
    TimestampsToReturn,
    UserNameIdentityToken,
    constructEventFilter,
    ofType,
    UserTokenType,
    makeBrowsePath,
} from "node-opcua-client";

// node-opcua logs through console.log; stdout carries nothing but the result.
console.log = console.error;
console.info = console.error;

const NAMESPACE_URI = "https://qualitybridge.dev/UA/";
const CHARACTERISTIC_TYPE = 1003; // ns=<QualityBridge>;i=1003, fixed in the NodeSet
const CHARACTERISTIC_MEMBERS = ["Nominal", "LowerLimit", "UpperLimit", "LastValue/EURange", "LastValue/EngineeringUnits"];
const CALIBRATION_VALID = 0;
const TIMEOUT_MS = 10_000;

const { values: options } = parseArgs({
    options: {
        scenario: { type: "string" },
        endpoint: { type: "string" },
        user: { type: "string" },
        password: { type: "string" },
        cert: { type: "string" },
        key: { type: "string" },
        "application-uri": { type: "string" },
        "server-cert": { type: "string" },
        pki: { type: "string" },
        "operator-user": { type: "string" },
        "spc-target": { type: "string" },
        "spc-value": { type: "string" },
        "await-planting": { type: "boolean" },
        "operator-password": { type: "string" },
        "untrusted-cert": { type: "string" },
        "untrusted-key": { type: "string" },
        "untrusted-application-uri": { type: "string" },
    },
});

function statusName(statusOrError) {
    if (statusOrError === undefined || statusOrError === null) return null;
    if (statusOrError.name && statusOrError.value !== undefined) return statusOrError.name; // a StatusCode
    // node-opcua puts the StatusCode's name into the message of the errors it raises for a service result.
    const match = /\b(Bad[A-Za-z]+)\b/.exec(String(statusOrError.message ?? statusOrError));
    return match ? match[1] : null;
}

function failure(error) {
    return { ok: false, status: statusName(error), message: String(error?.message ?? error).slice(0, 500) };
}

function jsonValue(value) {
    if (value === null || value === undefined) return null;
    if (value instanceof Date) return value.toISOString();
    if (Array.isArray(value)) return value.map(jsonValue);
    if (typeof value === "bigint") return value.toString();
    if (typeof value === "object") {
        if (value.text !== undefined && value.locale !== undefined) return value.text; // LocalizedText
        const plain = {};
        for (const [key, member] of Object.entries(value.toJSON ? value.toJSON() : value)) {
            if (typeof member !== "function") plain[key] = jsonValue(member);
        }
        return plain;
    }
    return value;
}

function withTimeout(promise, what, ms = TIMEOUT_MS) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function certificateManager() {
    // A PKI of node-opcua's own, holding exactly one trusted certificate: QualityBridge's. An unknown server
    // certificate would be refused, so a successful connect proves the server presented the one we expect.
    const manager = new OPCUACertificateManager({
        rootFolder: options.pki,
        automaticallyAcceptUnknownCertificate: false,
        disableFileWatchers: true,
    });
    await manager.initialize();
    await manager.trustCertificate(readFileSync(options["server-cert"]));
    return manager;
}

function makeClient(manager, securityMode, securityPolicy, extra = {}) {
    return OPCUAClient.create({
        applicationName: "QualityBridge interop test (node-opcua)",
        applicationUri: options["application-uri"],
        clientCertificateManager: manager,
        certificateFile: options.cert,
        privateKeyFile: options.key,
        securityMode,
        securityPolicy,
        endpointMustExist: true,
        connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
        requestedSessionTimeout: 60_000,
        ...extra,
    });
}

function secureClient(manager) {
    return makeClient(manager, MessageSecurityMode.SignAndEncrypt, SecurityPolicy.Basic256Sha256);
}

function userIdentity(user, password) {
    return { type: UserTokenType.UserName, userName: user, password };
}

// ---- browsing -------------------------------------------------------------------------------------------

async function browseTree(session, rootId, namespaceIndex) {
    // Breadth first over hierarchical references, a batch of nodes per Browse request. Nodes of other
    // namespaces are recorded but not entered: the QualityBridge tree is what is under test.
    const nodes = new Map();
    nodes.set(rootId, { nodeId: rootId, browseName: "QualityBridge", nodeClass: "Object", typeDefinition: null, parent: null, children: [] });
    let frontier = [rootId];
    let requests = 0;
    while (frontier.length > 0) {
        const batch = frontier.splice(0, 200);
        const descriptions = batch.map((nodeId) => ({
            nodeId,
            referenceTypeId: "HierarchicalReferences",
            includeSubtypes: true,
            browseDirection: BrowseDirection.Forward,
            nodeClassMask: 0,
            resultMask: 0x3f,
        }));
        const results = await session.browse(descriptions);
        requests += 1;
        for (let i = 0; i < batch.length; i += 1) {
            let result = results[i];
            const references = [...(result.references ?? [])];
            if (!result.statusCode.isGood()) throw new Error(`browse ${batch[i]}: ${result.statusCode.name}`);
            while (result.continuationPoint && result.continuationPoint.length > 0) {
                [result] = await session.browseNext([result.continuationPoint], false);
                requests += 1;
                references.push(...(result.references ?? []));
            }
            const parent = nodes.get(batch[i]);
            for (const reference of references) {
                const childId = reference.nodeId.toString();
                parent.children.push(childId);
                if (nodes.has(childId)) continue;
                const inNamespace = reference.nodeId.namespace === namespaceIndex;
                nodes.set(childId, {
                    nodeId: childId,
                    browseName: reference.browseName.name,
                    nodeClass: NodeClass[reference.nodeClass],
                    typeDefinition: reference.typeDefinition ? reference.typeDefinition.toString() : null,
                    parent: batch[i],
                    children: [],
                    entered: inNamespace,
                });
                if (inNamespace) frontier.push(childId);
            }
        }
    }
    return { nodes, requests };
}

function childNamed(nodes, parentId, browseName) {
    const parent = nodes.get(parentId);
    const id = parent?.children.find((child) => nodes.get(child).browseName === browseName);
    return id ?? null;
}

function memberId(nodes, parentId, path) {
    let id = parentId;
    for (const name of path.split("/")) {
        id = childNamed(nodes, id, name);
        if (id === null) return null;
    }
    return id;
}

// ---- the session scenario -------------------------------------------------------------------------------

async function callMethod(session, objectId, methodId, inputArguments) {
    const result = await session.call({ objectId, methodId, inputArguments });
    return {
        status: result.statusCode.name,
        inputArgumentResults: (result.inputArgumentResults ?? []).map((s) => s.name),
        outputArguments: (result.outputArguments ?? []).map((v) => ({ dataType: DataType[v.dataType], value: jsonValue(v.value) })),
    };
}

function reportArguments(target, value, clientResultId, valueType = DataType.Double) {
    return [
        { dataType: DataType.String, value: target.order },
        { dataType: DataType.String, value: target.operation },
        { dataType: DataType.String, value: target.characteristic },
        { dataType: valueType, value },
        { dataType: DataType.String, value: target.gauge },
        { dataType: DataType.String, value: "SN-NODE-OPCUA-1" },
        { dataType: DataType.DateTime, value: new Date() },
        { dataType: DataType.String, value: clientResultId },
    ];
}

async function startOrder(manager, methods, order) {
    // Later versions require a Running order for measurements; starting it is an operator's job, not a machine's.
    // A client (secure channel) of its own: asyncua serves one session per secure channel (see twoSessions).
    if (!methods.startOrder || !options["operator-user"]) return { attempted: false };
    const client = secureClient(manager);
    await withTimeout(client.connect(options.endpoint), "connect as operator");
    const operator = await client.createSession(userIdentity(options["operator-user"], options["operator-password"]));
    try {
        const answer = await callMethod(operator, methods.root, methods.startOrder, [{ dataType: DataType.String, value: order }]);
        return { attempted: true, ...answer };
    } finally {
        await operator.close();
        await client.disconnect();
    }
}

async function scenarioSession() {
    const out = { scenario: "session", timings: {} };
    const started = Date.now();
    const manager = await certificateManager();
    const client = secureClient(manager);
    await withTimeout(client.connect(options.endpoint), "connect");
    const session = await withTimeout(client.createSession(userIdentity(options.user, options.password)), "createSession");
    out.timings.connectMs = Date.now() - started;
    try {
        out.connection = { securityMode: MessageSecurityMode[client.securityMode], securityPolicy: String(client.securityPolicy) };
        const namespaceArray = (await session.read({ nodeId: "i=2255", attributeId: AttributeIds.Value })).value.value;
        const namespaceIndex = namespaceArray.indexOf(NAMESPACE_URI);
        out.namespaceIndex = namespaceIndex;
        const rootId = `ns=${namespaceIndex};s=QualityBridge`;

        let mark = Date.now();
        const { nodes, requests } = await withTimeout(browseTree(session, rootId, namespaceIndex), "browse", 30_000);
        out.timings.browseMs = Date.now() - mark;
        out.browse = { requests, nodeCount: nodes.size, nodes: [...nodes.values()].map(({ entered, ...node }) => node) };

        // Limits and units of every characteristic, found by type, in one Read.
        mark = Date.now();
        const characteristicType = `ns=${namespaceIndex};i=${CHARACTERISTIC_TYPE}`;
        const characteristics = [...nodes.values()].filter((n) => n.typeDefinition === characteristicType);
        const reads = [];
        for (const characteristic of characteristics) {
            for (const path of CHARACTERISTIC_MEMBERS) {
                reads.push({ characteristic: characteristic.nodeId, path, nodeId: memberId(nodes, characteristic.nodeId, path) });
            }
        }
        const present = reads.filter((r) => r.nodeId !== null);
        const dataValues = present.length ? await session.read(present.map((r) => ({ nodeId: r.nodeId, attributeId: AttributeIds.Value }))) : [];
        const limits = {};
        for (const characteristic of characteristics) limits[characteristic.nodeId] = {};
        reads.forEach((r) => {
            limits[r.characteristic][r.path] = r.nodeId === null ? { missing: true } : null;
        });
        present.forEach((r, i) => {
            const dataValue = dataValues[i];
            limits[r.characteristic][r.path] = {
                nodeId: r.nodeId,
                status: dataValue.statusCode.name,
                dataType: DataType[dataValue.value.dataType],
                value: jsonValue(dataValue.value.value),
            };
        });
        out.limits = limits;
        out.timings.readMs = Date.now() - mark;

        // The measurement: a valid gauge, the first characteristic of the first order, subscribed before reporting.
        const methods = {
            root: rootId,
            report: childNamed(nodes, rootId, "ReportMeasurement"),
            startOrder: childNamed(nodes, rootId, "StartOrder"),
        };
        const orders = nodes.get(childNamed(nodes, rootId, "Orders")).children.map((id) => nodes.get(id)).sort((a, b) => a.browseName.localeCompare(b.browseName));
        const order = orders[0];
        const operation = nodes.get(nodes.get(childNamed(nodes, order.nodeId, "Operations")).children[0]);
        const characteristic = nodes.get(nodes.get(childNamed(nodes, operation.nodeId, "Characteristics")).children[0]);
        // As a machine would choose: a gauge with a valid calibration, of the kind the characteristic asks for.
        const readMember = async (parentId, name) => {
            const id = childNamed(nodes, parentId, name);
            return id === null ? null : (await session.read({ nodeId: id, attributeId: AttributeIds.Value })).value.value;
        };
        const gaugeType = (await readMember(characteristic.nodeId, "GaugeType")) || null;
        const gauges = [];
        for (const gaugeId of nodes.get(childNamed(nodes, rootId, "TestEquipment")).children) {
            gauges.push({
                id: gaugeId,
                calibrationStatus: await readMember(gaugeId, "CalibrationStatus"),
                equipmentType: (await readMember(gaugeId, "EquipmentType")) || null,
            });
        }
        const validGauge = gauges.find(
            (g) => g.calibrationStatus === CALIBRATION_VALID && (gaugeType === null || g.equipmentType === null || g.equipmentType === gaugeType),
        );
        if (!validGauge) throw new Error(`no valid gauge of type ${gaugeType} among ${JSON.stringify(gauges)}`);
        const target = {
            order: order.browseName,
            operation: operation.browseName,
            characteristic: characteristic.browseName,
            characteristicNodeId: characteristic.nodeId,
            gaugeType,
            gauge: nodes.get(validGauge.id).browseName,
        };
        const nominal = limits[characteristic.nodeId].Nominal.value;
        const upper = limits[characteristic.nodeId].UpperLimit.value;
        out.report = { target, methods, nominal, upper };

        mark = Date.now();
        const subscription = await session.createSubscription2({
            requestedPublishingInterval: 100,
            requestedLifetimeCount: 600,
            requestedMaxKeepAliveCount: 20,
            maxNotificationsPerPublish: 100,
            publishingEnabled: true,
            priority: 1,
        });
        const changes = [];
        let notify = () => {};
        const lastValueId = childNamed(nodes, characteristic.nodeId, "LastValue");
        const monitored = await subscription.monitor(
            { nodeId: lastValueId, attributeId: AttributeIds.Value },
            { samplingInterval: 50, discardOldest: true, queueSize: 10 },
            TimestampsToReturn.Both,
        );
        monitored.on("changed", (dataValue) => {
            changes.push({ status: dataValue.statusCode.name, dataType: DataType[dataValue.value.dataType], value: jsonValue(dataValue.value.value) });
            notify();
        });
        const waitForValue = (value) =>
            withTimeout(
                new Promise((resolve) => {
                    notify = () => changes.some((c) => c.value === value) && resolve();
                    notify();
                }),
                `data change to ${value}`,
            );

        const runId = `node-opcua-${process.pid}-${Date.now()}`;
        const report = (value, suffix, type) => callMethod(session, methods.root, methods.report, reportArguments(target, value, `${runId}-${suffix}`, type));
        let inside = await report(nominal, "inside");
        out.report.firstAttempt = inside.status;
        if (inside.status === "BadInvalidState") {
            out.report.startOrder = await startOrder(manager, methods, target.order);
            inside = await report(nominal, "inside");
        }
        out.report.inside = inside;
        // A refused report changes nothing: no point in waiting for a data change then.
        const changed = (answer, value) => (answer.status === "Good" ? waitForValue(value).then(() => true, failure) : { ok: false, message: "not reported" });
        out.report.insideChange = await changed(inside, nominal);
        const outsideValue = upper + 0.5;
        out.report.outsideValue = outsideValue;
        out.report.outside = await report(outsideValue, "outside");
        out.report.outsideChange = await changed(out.report.outside, outsideValue);
        out.report.changes = changes;
        out.report.wrongType = await report("12.0", "wrong-type", DataType.String);
        out.timings.reportMs = Date.now() - mark;

        // HistoryRead (raw) of the same LastValue, one value per answer, so that every value but the last comes
        // back through a continuation point.
        mark = Date.now();
        const history = { pages: 0, values: [], status: null, start: new Date(Date.now() - 3_600_000).toISOString() };
        const historyEnd = new Date(Date.now() + 600_000);
        history.end = historyEnd.toISOString();
        let point;
        do {
            const page = await session.readHistoryValue(
                { nodeId: lastValueId, continuationPoint: point },
                new Date(history.start),
                historyEnd,
                { numValuesPerNode: 1, returnBounds: false },
            );
            history.status = page.statusCode.name;
            if (page.statusCode.isNotGood()) break;
            history.pages += 1;
            for (const dv of page.historyData?.dataValues ?? []) {
                history.values.push({ value: jsonValue(dv.value.value), status: dv.statusCode.name, sourceTimestamp: dv.sourceTimestamp?.toISOString() ?? null });
            }
            point = page.continuationPoint && page.continuationPoint.length ? page.continuationPoint : undefined;
        } while (point && history.pages < 200);
        history.lastValueId = lastValueId;
        out.history = history;
        out.timings.historyMs = Date.now() - mark;
        await subscription.terminate();
    } finally {
        await session.close();
        await client.disconnect();
    }
    out.timings.totalMs = Date.now() - started;
    return out;
}

// ---- the security scenario ------------------------------------------------------------------------------

async function attemptSession(client, identity) {
    // Each step recorded separately: a refusal must come from the server at the right step.
    const outcome = { connect: null, session: null, read: null };
    try {
        await withTimeout(client.connect(options.endpoint), "connect");
        outcome.connect = { ok: true };
    } catch (error) {
        outcome.connect = failure(error);
        return outcome;
    }
    try {
        const session = await withTimeout(client.createSession(identity), "createSession");
        outcome.session = { ok: true };
        try {
            const dataValue = await session.read({ nodeId: "i=2255", attributeId: AttributeIds.Value });
            outcome.read = { ok: dataValue.statusCode.isGood(), status: dataValue.statusCode.name };
        } catch (error) {
            outcome.read = failure(error);
        }
        await session.close().catch(() => {});
    } catch (error) {
        outcome.session = failure(error);
    } finally {
        await client.disconnect().catch(() => {});
    }
    return outcome;
}

async function forceNoneSession(manager, endpoints) {
    const outcome = { channel: null, createSession: null, activateSession: null };
    const client = makeClient(manager, MessageSecurityMode.None, SecurityPolicy.None, { endpointMustExist: false });
    try {
        await withTimeout(client.connect(options.endpoint), "connect");
        outcome.channel = { ok: true };
    } catch (error) {
        outcome.channel = failure(error);
        return outcome;
    }
    const channel = client._secureChannel;
    const transact = (request) =>
        withTimeout(
            new Promise((resolve, reject) => channel.performMessageTransaction(request, (error, response) => (error ? reject(error) : resolve(response)))),
            request.constructor.name,
        );
    try {
        const created = await transact(
            new CreateSessionRequest({
                clientDescription: { applicationUri: options["application-uri"], applicationType: ApplicationType.Client },
                clientNonce: randomBytes(32),
                endpointUrl: options.endpoint,
                sessionName: "none-channel-probe",
                requestedSessionTimeout: 10_000,
            }),
        );
        outcome.createSession = { ok: created.responseHeader.serviceResult.isGood(), status: created.responseHeader.serviceResult.name };
        const policyId = endpoints.flatMap((e) => e.userTokenPolicies).find((p) => p.tokenType === "UserName")?.policyId ?? "username";
        const activated = await transact(
            new ActivateSessionRequest({
                requestHeader: { authenticationToken: created.authenticationToken },
                userIdentityToken: new UserNameIdentityToken({ policyId, userName: options.user, password: Buffer.from(options.password) }),
            }),
        );
        outcome.activateSession = { ok: activated.responseHeader.serviceResult.isGood(), status: activated.responseHeader.serviceResult.name };
    } catch (error) {
        outcome[outcome.createSession === null ? "createSession" : "activateSession"] = failure(error);
    } finally {
        await client.disconnect().catch(() => {});
    }
    return outcome;
}

async function twoSessionsOnOneChannel(manager, identity) {
    // OPC UA lets a client run several sessions over one secure channel, each request naming its session by
    // its AuthenticationToken. Recorded per step: which session's reads still work.
    const readStatus = (session) =>
        session.read({ nodeId: "i=2255", attributeId: AttributeIds.Value }).then(
            (dataValue) => dataValue.statusCode.name,
            (error) => statusName(error) ?? String(error?.message ?? error),
        );
    const client = secureClient(manager);
    const outcome = {};
    await withTimeout(client.connect(options.endpoint), "connect");
    try {
        const first = await withTimeout(client.createSession(identity), "first session");
        outcome.firstAlone = await readStatus(first);
        const second = await withTimeout(client.createSession(identity), "second session").catch(failure);
        if (second.ok === false) {
            outcome.secondSession = second;
        } else {
            outcome.secondRead = await readStatus(second);
            outcome.firstBesideSecond = await readStatus(first);
            await second.close().catch(() => {});
            outcome.firstAfterSecondClosed = await readStatus(first);
        }
        await first.close().catch(() => {});
    } finally {
        await client.disconnect().catch(() => {});
    }
    return outcome;
}

async function scenarioSecurity() {
    const out = { scenario: "security", timings: {} };
    const started = Date.now();
    const manager = await certificateManager();

    // What the server offers, asked the way every client asks first (GetEndpoints needs no security).
    const discovery = makeClient(manager, MessageSecurityMode.None, SecurityPolicy.None, { endpointMustExist: false });
    await withTimeout(discovery.connect(options.endpoint), "connect for GetEndpoints");
    try {
        const endpoints = await discovery.getEndpoints();
        out.endpoints = endpoints.map((e) => ({
            securityMode: MessageSecurityMode[e.securityMode],
            securityPolicyUri: e.securityPolicyUri,
            userTokens: (e.userIdentityTokens ?? []).map((t) => UserTokenType[t.tokenType]),
            userTokenPolicies: (e.userIdentityTokens ?? []).map((t) => ({ policyId: t.policyId, tokenType: UserTokenType[t.tokenType] })),
        }));
    } finally {
        await discovery.disconnect();
    }

    // None: node-opcua itself will not open a session on an endpoint the server does not list, so it is asked
    // twice: as a well-behaved client, and the way a hostile client would, below that check (the asyncua trap:
    // a session over a None secure channel the server never listed).
    const identity = userIdentity(options.user, options.password);
    out.noneListed = await attemptSession(makeClient(manager, MessageSecurityMode.None, SecurityPolicy.None), identity);
    out.noneForced = await forceNoneSession(manager, out.endpoints);

    // Every policy and mode the server lists works with this stack too, not only Basic256Sha256.
    out.policies = [];
    for (const endpoint of out.endpoints) {
        const client = makeClient(manager, MessageSecurityMode[endpoint.securityMode], endpoint.securityPolicyUri);
        out.policies.push({ ...endpoint, userTokenPolicies: undefined, outcome: await attemptSession(client, identity) });
    }

    // Our side of the trust: a node-opcua PKI that does not know QualityBridge's certificate must refuse it,
    // which is what makes the successful connects above prove the server showed the expected certificate.
    const stranger = new OPCUACertificateManager({ rootFolder: `${options.pki}-stranger`, automaticallyAcceptUnknownCertificate: false, disableFileWatchers: true });
    await stranger.initialize();
    out.serverNotTrusted = await attemptSession(secureClient(stranger), identity);

    // A client certificate QualityBridge has not been told to trust: refused at OpenSecureChannel.
    if (options["untrusted-cert"]) {
        const untrusted = makeClient(manager, MessageSecurityMode.SignAndEncrypt, SecurityPolicy.Basic256Sha256, {
            applicationUri: options["untrusted-application-uri"],
            certificateFile: options["untrusted-cert"],
            privateKeyFile: options["untrusted-key"],
        });
        out.clientNotTrusted = await attemptSession(untrusted, identity);
    }

    out.twoSessions = await twoSessionsOnOneChannel(manager, identity);

    out.wrongPassword = await attemptSession(secureClient(manager), userIdentity(options.user, `${options.password}-wrong`));
    out.unknownUser = await attemptSession(secureClient(manager), userIdentity(`${options.user}-nobody`, options.password));

    // The given user is an Observer: logged in and reading, but any method call is refused.
    const client = secureClient(manager);
    await withTimeout(client.connect(options.endpoint), "connect");
    const session = await withTimeout(client.createSession(identity), "createSession");
    try {
        const namespaceArray = (await session.read({ nodeId: "i=2255", attributeId: AttributeIds.Value })).value.value;
        const namespaceIndex = namespaceArray.indexOf(NAMESPACE_URI);
        const released = await session.read({ nodeId: `ns=${namespaceIndex};s=QualityBridge.ReleasedOrders`, attributeId: AttributeIds.Value });
        out.observerRead = { status: released.statusCode.name, value: jsonValue(released.value.value) };
        const [path] = await session.translateBrowsePath([makeBrowsePath(`ns=${namespaceIndex};s=QualityBridge`, `/${namespaceIndex}:ReportMeasurement`)]);
        const methodId = path.targets?.[0]?.targetId?.toString();
        const order = out.observerRead.value?.[0] ?? "none";
        const target = { order, operation: "0010", characteristic: "X", gauge: "GA-CMM-0001" };
        try {
            out.observerCall = { ok: true, methodId, ...(await callMethod(session, `ns=${namespaceIndex};s=QualityBridge`, methodId, reportArguments(target, 1.0, "observer"))) };
        } catch (error) {
            out.observerCall = { methodId, ...failure(error) };
        }
    } finally {
        await session.close();
        await client.disconnect();
    }
    out.timings.totalMs = Date.now() - started;
    return out;
}

// ---- the SPC scenario -----------------------------------------------------------------------------------

const SPC_ALARM_EVENT_TYPE = 1011; // ns=<QualityBridge>;i=1011, fixed in the NodeSet
// The caller reports a whole planted stream meanwhile, one call at a time, on a machine that may be busy.
const PLANTING_TIMEOUT_MS = 300_000;
const SPC_ALARM_TIMEOUT_MS = 30_000;

async function untilPlanted() {
    // stdout stays pure JSON: this line is the first, the result is the last.
    process.stdout.write(`${JSON.stringify({ listening: true })}\n`);
    const lines = createInterface({ input: process.stdin });
    try {
        const [line] = await withTimeout(once(lines, "line"), "the caller's planted stream", PLANTING_TIMEOUT_MS);
        return JSON.parse(line);
    } finally {
        lines.close();
    }
}

const STANDARD_FIELDS = ["EventId", "EventType", "SourceNode", "SourceName", "Severity", "Message"];
const SPC_FIELDS = ["OrderNumber", "OperationNumber", "CharacteristicId", "RuleNumber", "ResultId", "Value", "CenterLine", "UCL", "LCL"];
const SPC_ALARM_TYPE = 1013; // the condition type, ns=<QualityBridge>;i=1013, fixed in the NodeSet
// "ConditionId" is node-opcua's name for the condition's NodeId (ConditionType, empty browse path); dots are paths.
const CONDITION_FIELDS = ["ConditionId", "EventId", "EventType", "SourceNode", "Severity", "ActiveState.Id", "AckedState.Id", "ConfirmedState.Id", "Retain"];

async function monitorEvents(subscription, fields, filter, received, onEvent) {
    // At the Server object; every event recorded field by field as selected, with the data type it arrived with.
    const monitored = await subscription.monitor(
        { nodeId: "i=2253", attributeId: AttributeIds.EventNotifier },
        { samplingInterval: 0, discardOldest: true, queueSize: 100, filter },
        TimestampsToReturn.Both,
    );
    monitored.on("changed", (eventFields) => {
        const event = {};
        fields.forEach((field, i) => {
            const name = typeof field === "string" ? field : field.name;
            const variant = eventFields[i];
            let value = variant.value;
            if (name === "EventId") value = value ? Buffer.from(value).toString("hex") : null;
            else if (name === "Message") value = value ? value.text : null;
            else if (value && typeof value === "object" && "toString" in value && !(value instanceof Date)) value = value.toString();
            event[name] = { dataType: DataType[variant.dataType], value: jsonValue(value) };
        });
        received.push(event);
        onEvent();
    });
    return monitored.statusCode ? monitored.statusCode.name : "Good";
}

async function scenarioSpc() {
    const out = { scenario: "spc", timings: {} };
    const started = Date.now();
    const manager = await certificateManager();
    const client = secureClient(manager);
    await withTimeout(client.connect(options.endpoint), "connect");
    const session = await withTimeout(client.createSession(userIdentity(options.user, options.password)), "createSession");
    out.timings.connectMs = Date.now() - started;
    try {
        const namespaceArray = (await session.read({ nodeId: "i=2255", attributeId: AttributeIds.Value })).value.value;
        const namespaceIndex = namespaceArray.indexOf(NAMESPACE_URI);
        const rootId = `ns=${namespaceIndex};s=QualityBridge`;
        const spcAlarmEventType = `ns=${namespaceIndex};i=${SPC_ALARM_EVENT_TYPE}`;
        const fields = [...STANDARD_FIELDS, ...SPC_FIELDS.map((name) => ({ namespaceIndex, name }))];
        const filter = constructEventFilter(fields, ofType(spcAlarmEventType));
        out.filter = { selectClauses: filter.selectClauses.length, whereClauseElements: filter.whereClause.elements.length };

        const subscription = await session.createSubscription2({
            requestedPublishingInterval: 100,
            requestedLifetimeCount: 600,
            requestedMaxKeepAliveCount: 20,
            maxNotificationsPerPublish: 100,
            publishingEnabled: true,
            priority: 1,
        });
        const events = [];
        const conditions = [];
        let notify = () => {};
        out.monitorStatus = await monitorEvents(subscription, fields, filter, events, () => notify());
        // A second monitored item: the same alarms as events of the characteristic's SpcAlarmType condition.
        const spcAlarmType = `ns=${namespaceIndex};i=${SPC_ALARM_TYPE}`;
        const conditionFields = [...CONDITION_FIELDS, ...SPC_FIELDS.map((name) => ({ namespaceIndex, name }))];
        const conditionFilter = constructEventFilter(conditionFields, ofType(spcAlarmType));
        out.conditionMonitorStatus = await monitorEvents(subscription, conditionFields, conditionFilter, conditions, () => notify());

        if (options["await-planting"]) {
            const listening = Date.now();
            out.planting = await untilPlanted();
            out.timings.plantingMs = Date.now() - listening;
        }

        const [order, operation, characteristic, gauge] = options["spc-target"].split("/");
        const target = { order, operation, characteristic, gauge };
        const value = Number(options["spc-value"]);
        const mark = Date.now();
        const methodId = `ns=${namespaceIndex};s=QualityBridge.ReportMeasurement`;
        out.report = await callMethod(session, rootId, methodId, reportArguments(target, value, `node-opcua-spc-${process.pid}-${Date.now()}`));
        const resultId = out.report.outputArguments[0]?.value;
        if (out.report.status === "Good") {
            out.alarmWait = await withTimeout(
                new Promise((resolve) => {
                    const mine = (received) => received.some((e) => e.ResultId.value === resultId);
                    notify = () => mine(events) && mine(conditions) && resolve();
                    notify();
                }),
                "the SPC alarm event and its condition's event",
                SPC_ALARM_TIMEOUT_MS,
            ).then(() => true, failure);
        }
        out.timings.alarmMs = Date.now() - mark;
        await new Promise((resolve) => setTimeout(resolve, 500)); // a wrongly repeated event would arrive now
        out.events = events;
        out.conditions = conditions;
        out.target = target;
        out.value = value;
        out.spcAlarmEventType = spcAlarmEventType;
        out.spcAlarmType = spcAlarmType;
        await subscription.terminate();
    } finally {
        await session.close();
        await client.disconnect();
    }
    out.timings.totalMs = Date.now() - started;
    return out;
}

const scenarios = { session: scenarioSession, security: scenarioSecurity, spc: scenarioSpc };

async function main() {
    const run = scenarios[options.scenario];
    if (!run) throw new Error(`unknown scenario ${options.scenario}; known: ${Object.keys(scenarios).join(", ")}`);
    return run();
}

// Writes to a pipe are asynchronous: exit only once the result is out (node-opcua may hold handles open).
const finish = (result, code) => process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(code));
main().then(
    (result) => finish(result, 0),
    (error) => finish({ scenario: options.scenario, error: String(error?.stack ?? error) }, 1),
);
