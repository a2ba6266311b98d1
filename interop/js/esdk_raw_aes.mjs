#!/usr/bin/env node
// Read and write kommunmoln tier A messages with the AWS Encryption SDK for JavaScript
// (@aws-crypto/client-node, pinned in package.json) and nothing from kommunmoln: the exit path
// of docs/use-case-1.md, section 6, proven by tests/library/tier_a/test_interop_js.py.
//
//   node esdk_raw_aes.mjs decrypt KEYFILE IN OUT [--expect k=v ...]
//   node esdk_raw_aes.mjs encrypt KEYFILE IN OUT [--context k=v ...]
//
// KEYFILE is the workshop key file {"namespace", "name", "material_b64"}: namespace = the
// raw AES keyring's keyNamespace, name = its keyName, material = the 32-byte wrapping key.
// OUT appears only when the whole message (or plaintext) was processed: output goes to a 0600
// temporary file beside OUT that is renamed into place at the end and deleted on any failure.
// decrypt prints one JSON line: {"encryptionContext": {...}, "suite": ..., "plaintextBytes": n}.
// Exit codes: 0 success, 1 the operation failed (wrong key, tampered data, context mismatch),
// 2 bad input (usage, unreadable key file or input). Errors are one line on stderr.

import { randomBytes } from 'node:crypto'
import { closeSync, createReadStream, createWriteStream, fstatSync, fsyncSync, openSync, readFileSync } from 'node:fs'
import { rename, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'

import esdk from '@aws-crypto/client-node'

const {
  AlgorithmSuiteIdentifier,
  buildClient,
  CommitmentPolicy,
  RawAesKeyringNode,
  RawAesWrappingSuiteIdentifier,
} = esdk

const SUITE = AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY
const FRAME_LENGTH = 1024 * 1024 // the same frame size as kommunmoln's codec (not required to read)
const MAX_ENCRYPTED_DATA_KEYS = 8 // primary + escrow + rotation overlap, as kommunmoln's codec
const MAX_KEY_FILE_BYTES = 4096
const RESERVED_CONTEXT_PREFIX = 'aws-crypto-'
const USAGE = `usage:
  node esdk_raw_aes.mjs decrypt KEYFILE IN OUT [--expect k=v ...]
  node esdk_raw_aes.mjs encrypt KEYFILE IN OUT [--context k=v ...]`

class UsageError extends Error {}

function loadKeyring (path) {
  let fd
  try {
    fd = openSync(path, 'r')
  } catch (error) {
    throw new UsageError(`cannot open key file ${path}: ${error.code || error.message}`)
  }
  let text
  try {
    const info = fstatSync(fd)
    if (!info.isFile()) throw new UsageError(`key file ${path} is not a regular file`)
    if (process.platform !== 'win32' && (info.mode & 0o077)) {
      throw new UsageError(`refusing key file ${path}: accessible by group or others; run: chmod 600 ${path}`)
    }
    if (info.size > MAX_KEY_FILE_BYTES) throw new UsageError(`key file ${path} is too large to be a key`)
    text = readFileSync(fd, 'utf8')
  } finally {
    closeSync(fd)
  }
  let doc
  try {
    doc = JSON.parse(text)
  } catch {
    throw new UsageError(`key file ${path} is not valid JSON`)
  }
  const fields = ['namespace', 'name', 'material_b64']
  if (!doc || typeof doc !== 'object' || !fields.every((f) => typeof doc[f] === 'string' && doc[f])) {
    throw new UsageError(`key file ${path} must hold ${fields.join(', ')} as strings`)
  }
  const material = Buffer.from(doc.material_b64, 'base64')
  // Node's base64 decoder skips invalid characters; insist on a canonical 32-byte value.
  if (material.length !== 32 || material.toString('base64') !== doc.material_b64.trim()) {
    throw new UsageError(`key file ${path}: material_b64 must be 32 bytes (AES-256) in base64`)
  }
  const keyring = new RawAesKeyringNode({
    keyNamespace: doc.namespace,
    keyName: doc.name,
    unencryptedMasterKey: new Uint8Array(material),
    wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
    // The wrapped data key's AAD is the serialized encryption context. Every other ESDK
    // (Python, Java, C, .NET, Go, Rust) sorts it by UTF-8 bytes; this keyring's default
    // (false) sorts with String.localeCompare, which differs for mixed case, punctuation
    // and non-ASCII keys (e.g. "Zon" vs "kommunmoln:key", "år" vs "z"): unwrapping then fails.
    utf8Sorting: true,
  })
  material.fill(0)
  return keyring
}

function parseContext (items, option) {
  const context = {}
  for (const item of items) {
    const at = item.indexOf('=')
    if (at < 1) throw new UsageError(`${option} ${JSON.stringify(item)} must look like key=value`)
    const key = item.slice(0, at)
    if (key.startsWith(RESERVED_CONTEXT_PREFIX)) {
      throw new UsageError(`${option} key ${JSON.stringify(key)} is reserved by the AWS Encryption SDK`)
    }
    if (Object.hasOwn(context, key)) throw new UsageError(`${option} names ${JSON.stringify(key)} twice`)
    context[key] = item.slice(at + 1)
  }
  return context
}

function parseArgs (argv) {
  const [command, ...rest] = argv
  if (command !== 'decrypt' && command !== 'encrypt') throw new UsageError(USAGE)
  const option = command === 'decrypt' ? '--expect' : '--context'
  const positional = []
  const items = []
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === option) {
      if (i + 1 >= rest.length) throw new UsageError(`${option} needs a value k=v`)
      items.push(rest[++i])
    } else if (rest[i].startsWith(option + '=')) {
      items.push(rest[i].slice(option.length + 1))
    } else if (rest[i].startsWith('--')) {
      throw new UsageError(`unknown option ${rest[i]}\n${USAGE}`)
    } else {
      positional.push(rest[i])
    }
  }
  if (positional.length !== 3) throw new UsageError(USAGE)
  const [keyFile, input, output] = positional
  return { command, keyFile, input, output, context: parseContext(items, option) }
}

function openInput (path) {
  let fd
  try {
    fd = openSync(path, 'r')
    if (!fstatSync(fd).isFile()) throw Object.assign(new Error(), { code: 'not a regular file' })
  } catch (error) {
    if (fd !== undefined) closeSync(fd)
    throw new UsageError(`cannot read input ${path}: ${error.code || error.message}`)
  }
  return createReadStream(null, { fd })
}

// Run `transforms` from IN into a 0600 temporary file beside OUT; rename it to OUT on success.
async function allOrNothing (input, output, transforms) {
  const tmp = join(dirname(output), `.${basename(output)}.${randomBytes(6).toString('hex')}.partial`)
  let sink
  try {
    sink = createWriteStream(null, { fd: openSync(tmp, 'wx', 0o600) }) // the stream closes the fd
  } catch (error) {
    throw new UsageError(`cannot write beside ${output}: ${error.code || error.message}`)
  }
  try {
    await pipeline(openInput(input), ...transforms, sink)
    const fd = openSync(tmp, 'r+')
    try {
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    await rename(tmp, output)
  } catch (error) {
    sink.destroy()
    await unlink(tmp).catch(() => {})
    throw error
  }
}

function counter () {
  const stats = { bytes: 0 }
  const stream = new Transform({
    transform (chunk, _enc, done) {
      stats.bytes += chunk.length
      done(null, chunk)
    },
  })
  return { stats, stream }
}

function client () {
  return buildClient({
    commitmentPolicy: CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT,
    maxEncryptedDataKeys: MAX_ENCRYPTED_DATA_KEYS,
  })
}

async function decrypt ({ keyFile, input, output, context: expected }) {
  const keyring = loadKeyring(keyFile)
  const decryptor = client().decryptStream(keyring)
  let header
  decryptor.once('MessageHeader', (messageHeader) => {
    header = messageHeader
    const found = messageHeader.encryptionContext
    for (const [key, value] of Object.entries(expected)) {
      const problem = !Object.hasOwn(found, key)
        ? `encryption context has no ${JSON.stringify(key)} (expected ${key}=${value})`
        : found[key] !== value
          ? `encryption context mismatch: ${key}=${JSON.stringify(found[key])} in the message, expected ${JSON.stringify(value)}`
          : null
      if (problem) {
        decryptor.destroy(new Error(`${problem}; refused`))
        break
      }
    }
  })
  const { stats, stream } = counter()
  try {
    await allOrNothing(input, output, [decryptor, stream])
  } catch (error) {
    // The JS ESDK's words when no encrypted data key unwraps with the keyring.
    if (String(error && error.message).includes('unencryptedDataKey has not been set')) {
      throw new Error(`no data key in the message unwraps with key ${keyring.keyNamespace}/${keyring.keyName}: wrong key material, or a message for another key`)
    }
    throw error
  }
  if (!header) throw new Error('no message header was read')
  const shown = Object.fromEntries(
    Object.entries(header.encryptionContext).filter(([k]) => !k.startsWith(RESERVED_CONTEXT_PREFIX))
  )
  const suite = AlgorithmSuiteIdentifier[header.suiteId] || header.suiteId
  console.log(JSON.stringify({ encryptionContext: shown, suite, plaintextBytes: stats.bytes }))
}

async function encrypt ({ keyFile, input, output, context }) {
  const keyring = loadKeyring(keyFile)
  const encryptor = client().encryptStream(keyring, {
    suiteId: SUITE,
    encryptionContext: context,
    frameLength: FRAME_LENGTH,
  })
  const { stats, stream } = counter()
  await allOrNothing(input, output, [encryptor, stream])
  console.error(`encrypted ${input} -> ${output} (${stats.bytes} bytes)`)
}

async function main () {
  let args
  try {
    args = parseArgs(process.argv.slice(2))
    await (args.command === 'decrypt' ? decrypt(args) : encrypt(args))
    return 0
  } catch (error) {
    const text = String(error && error.message ? error.message : error).split('\n')
    if (error instanceof UsageError) {
      console.error(text.length > 1 ? text.join('\n') : `error: ${text[0]}`)
      return 2
    }
    console.error(`error: ${args ? args.command : 'esdk'} failed: ${text.join(' ').slice(0, 300)}`)
    return 1
  }
}

process.exitCode = await main()
