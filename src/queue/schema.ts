/**
 * JSON Schema of job payload v1, published as docs/payload.schema.json (a test keeps the two
 * equal). Producers in other languages build jobs to this schema; the worker validates every
 * job against it before anything runs.
 */
const name = { type: 'string', minLength: 1, maxLength: 200 } as const;
const names = { type: 'array', items: name, minItems: 1, maxItems: 1600 } as const;

export const PAYLOAD_SCHEMA = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://bulkmodel.dev/schemas/payload.json',
  title: 'bulkmodel job payload, versions 1, 2 and 3',
  description:
    "Data of the BullMQ jobs bulkmodel enqueues. Job name 'chunk': one chunk of rows. Job name 'operation': the parent job of an operation (and the whole job for update and copyTo). Job name 'seal': closes enqueueing of an operation.",
  oneOf: [
    { $ref: '#/definitions/chunk' },
    { $ref: '#/definitions/copyChunk' },
    { $ref: '#/definitions/dataChunk' },
    { $ref: '#/definitions/operation' },
    { $ref: '#/definitions/seal' },
  ],
  definitions: {
    operationId: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,200}$' },
    value: {
      description:
        'A value: JSON string, finite number, boolean, null, an array of values, or a tag object for what JSON cannot hold exactly.',
      anyOf: [
        { type: ['string', 'number', 'boolean', 'null'] },
        { type: 'array', items: { $ref: '#/definitions/value' } },
        { $ref: '#/definitions/tag' },
      ],
    },
    tag: {
      type: 'object',
      required: ['$t'],
      additionalProperties: false,
      properties: {
        $t: { enum: ['absent', 'bigint', 'bytes', 'date', 'json', 'number', 'object'] },
        v: {},
      },
      allOf: [
        {
          if: { properties: { $t: { const: 'bigint' } } },
          then: { required: ['v'], properties: { v: { type: 'string', pattern: '^-?[0-9]+$' } } },
        },
        {
          if: { properties: { $t: { const: 'bytes' } } },
          then: { required: ['v'], properties: { v: { type: 'string' } } },
        },
        {
          if: { properties: { $t: { const: 'date' } } },
          then: { required: ['v'], properties: { v: { type: 'string' } } },
        },
        {
          if: { properties: { $t: { const: 'json' } } },
          then: { required: ['v'], properties: { v: { type: 'string' } } },
        },
        {
          if: { properties: { $t: { const: 'number' } } },
          then: {
            required: ['v'],
            properties: { v: { enum: ['NaN', 'Infinity', '-Infinity', '-0'] } },
          },
        },
        {
          if: { properties: { $t: { const: 'object' } } },
          then: {
            required: ['v'],
            properties: {
              v: { type: 'object', additionalProperties: { $ref: '#/definitions/value' } },
            },
          },
        },
      ],
    },
    where: {
      description:
        'Structured filter: column -> value, array of values (IN), or {eq, ne, gt, gte, lt, lte, in, isNull} as an object tag.',
      type: 'object',
      additionalProperties: { $ref: '#/definitions/value' },
    },
    options: {
      type: 'object',
      additionalProperties: false,
      properties: {
        returning: { anyOf: [{ type: 'boolean' }, { type: 'array', items: name }] },
        onConflict: {
          anyOf: [
            { const: 'ignore' },
            {
              type: 'object',
              required: ['target'],
              additionalProperties: false,
              properties: { target: names, update: { type: 'array', items: name } },
            },
          ],
        },
        key: names,
        fields: names,
        signals: { type: 'boolean' },
        batchSize: { type: 'integer', minimum: 1 },
        onError: {
          description:
            "copyFrom of CSV: 'skip' leaves out the records Postgres refuses (each chunk at most maxErrors), in the chunk's own transaction",
          enum: ['skip'],
        },
        maxErrors: { type: 'integer', minimum: 0, maximum: 10000 },
      },
    },
    chunk: {
      type: 'object',
      required: ['v', 'kind', 'operationId', 'table', 'chunk', 'options', 'columns', 'rows'],
      additionalProperties: false,
      properties: {
        v: { const: 1 },
        kind: { enum: ['bulkCreate', 'updateFields', 'copyFrom'] },
        operationId: { $ref: '#/definitions/operationId' },
        table: name,
        chunk: {
          type: 'object',
          required: ['index', 'offset'],
          additionalProperties: false,
          properties: {
            index: { type: 'integer', minimum: 0 },
            offset: { type: 'integer', minimum: 0 },
          },
        },
        options: { $ref: '#/definitions/options' },
        columns: { type: 'array', items: name, maxItems: 1600, uniqueItems: true },
        rows: { type: 'array', items: { type: 'array', items: { $ref: '#/definitions/value' } } },
        jsonColumns: {
          description:
            "Indexes of columns whose values are a json/jsonb value's JSON text as a bare string (not a json tag), null, or the absent tag (by index, so not checked by this schema: validatePayload and the worker check it)",
          type: 'array',
          items: { type: 'integer', minimum: 0 },
          maxItems: 1600,
          uniqueItems: true,
        },
      },
    },
    copyChunk: {
      description:
        "Version 2 of a 'chunk' job: rows as Postgres's COPY data, written by COPY as they are. format 'text': COPY's text format (tab-separated, backslash escapes, \\N for NULL), encoded for the column kinds of the worker-published catalog snapshot whose fingerprint is `catalog`; 'csv': records of a CSV file as they were in it (NULL is an unquoted empty field), `chunk.line` the file line of the first. Every record ends with a newline; `rows` counts them; no record may be `\\.` alone.",
      type: 'object',
      required: ['v', 'kind', 'operationId', 'table', 'chunk', 'options', 'format', 'groups'],
      additionalProperties: false,
      properties: {
        v: { const: 2 },
        kind: { enum: ['bulkCreate', 'copyFrom'] },
        operationId: { $ref: '#/definitions/operationId' },
        table: name,
        chunk: {
          type: 'object',
          required: ['index', 'offset'],
          additionalProperties: false,
          properties: {
            index: { type: 'integer', minimum: 0 },
            offset: { type: 'integer', minimum: 0 },
            line: { type: 'integer', minimum: 1 },
          },
        },
        options: {
          type: 'object',
          additionalProperties: false,
          properties: {
            onConflict: { $ref: '#/definitions/options/properties/onConflict' },
            signals: { type: 'boolean' },
            batchSize: { type: 'integer', minimum: 1 },
            onError: { $ref: '#/definitions/options/properties/onError' },
            maxErrors: { $ref: '#/definitions/options/properties/maxErrors' },
          },
        },
        format: { enum: ['text', 'csv'] },
        csv: {
          description:
            "format 'csv': the file's field delimiter (one ASCII character; default ',') and NULL text (default: an unquoted empty field), as COPY ... CSV takes them",
          type: 'object',
          additionalProperties: false,
          properties: {
            delimiter: { type: 'string', minLength: 1, maxLength: 1 },
            null: { type: 'string', maxLength: 64 },
          },
        },
        catalog: { type: 'string', minLength: 1, maxLength: 100 },
        groups: {
          type: 'array',
          minItems: 1,
          maxItems: 1000,
          items: {
            type: 'object',
            required: ['columns', 'rows', 'data'],
            additionalProperties: false,
            properties: {
              columns: {
                type: 'array',
                items: name,
                minItems: 1,
                maxItems: 1600,
                uniqueItems: true,
              },
              rows: { type: 'integer', minimum: 1 },
              data: { type: 'string' },
              rowIdx: {
                type: 'array',
                items: { type: 'integer', minimum: 0, maximum: 1_000_000 },
                maxItems: 1_000_000,
              },
            },
          },
        },
      },
    },
    dataChunk: {
      description:
        "Version 3 of a 'chunk' job: version 2 with the COPY data kept beside the job, not in it. The data is stored under the job's operation id and chunk index (Redis: field <index> of the hash <prefix>:<queue>:bm:op:<operationId>:data; Postgres backend: table bm_chunk_data of the queue schema) before the job is added; `data` gives its length in bytes and its sha256 (base64url, no padding), which the worker checks before it writes anything. The groups' data follow each other in it, `bytes` each, in group order.",
      type: 'object',
      required: [
        'v',
        'kind',
        'operationId',
        'table',
        'chunk',
        'options',
        'format',
        'data',
        'groups',
      ],
      additionalProperties: false,
      properties: {
        v: { const: 3 },
        kind: { $ref: '#/definitions/copyChunk/properties/kind' },
        operationId: { $ref: '#/definitions/operationId' },
        table: name,
        chunk: { $ref: '#/definitions/copyChunk/properties/chunk' },
        options: { $ref: '#/definitions/copyChunk/properties/options' },
        format: { $ref: '#/definitions/copyChunk/properties/format' },
        csv: { $ref: '#/definitions/copyChunk/properties/csv' },
        catalog: { $ref: '#/definitions/copyChunk/properties/catalog' },
        data: {
          type: 'object',
          required: ['bytes', 'sha256'],
          additionalProperties: false,
          properties: {
            bytes: { type: 'integer', minimum: 1, maximum: 2147483647 },
            sha256: { type: 'string', pattern: '^[A-Za-z0-9_-]{43}$' },
          },
        },
        groups: {
          type: 'array',
          minItems: 1,
          maxItems: 1000,
          items: {
            type: 'object',
            required: ['columns', 'rows', 'bytes'],
            additionalProperties: false,
            properties: {
              columns: {
                $ref: '#/definitions/copyChunk/properties/groups/items/properties/columns',
              },
              rows: { type: 'integer', minimum: 1 },
              bytes: { type: 'integer', minimum: 1, maximum: 2147483647 },
              rowIdx: { $ref: '#/definitions/copyChunk/properties/groups/items/properties/rowIdx' },
            },
          },
        },
      },
    },
    operation: {
      type: 'object',
      required: ['v', 'kind', 'operationId', 'table', 'options'],
      additionalProperties: false,
      properties: {
        v: { const: 1 },
        kind: { enum: ['bulkCreate', 'updateFields', 'copyFrom', 'update', 'copyTo'] },
        operationId: { $ref: '#/definitions/operationId' },
        table: name,
        options: { $ref: '#/definitions/options' },
        update: {
          description:
            'The rows the filter matches (`where`, never empty), or every row (`all: true`); never both.',
          type: 'object',
          required: ['set'],
          additionalProperties: false,
          properties: {
            where: { allOf: [{ $ref: '#/definitions/where' }, { minProperties: 1 }] },
            all: { const: true },
            set: {
              type: 'object',
              minProperties: 1,
              additionalProperties: { $ref: '#/definitions/value' },
            },
          },
          oneOf: [{ required: ['where'] }, { required: ['all'] }],
        },
        copyTo: {
          type: 'object',
          required: ['path'],
          additionalProperties: false,
          properties: {
            path: { type: 'string', minLength: 1 },
            format: { enum: ['csv', 'text', 'ndjson'] },
            columns: { type: 'array', items: name },
            where: { $ref: '#/definitions/where' },
          },
        },
      },
    },
    seal: {
      type: 'object',
      required: ['v', 'operationId', 'seal'],
      additionalProperties: false,
      properties: {
        v: { const: 1 },
        operationId: { $ref: '#/definitions/operationId' },
        seal: { const: true },
      },
    },
  },
} as const;
