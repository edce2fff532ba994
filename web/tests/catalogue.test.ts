// Every string of the interface is in both catalogues: the keys of zh-CN and en are the same,
// and every literal key the source asks for exists.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import zh from '../src/i18n/zh-CN'
import en from '../src/i18n/en'

function keys(value: unknown, prefix = ''): string[] {
  if (value === null || typeof value !== 'object') return [prefix]
  return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => keys(v, prefix ? `${prefix}.${k}` : k))
}

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return sources(path)
    return /\.(vue|ts)$/.test(name) && !path.includes('i18n') ? [path] : []
  })
}

describe('the catalogues', () => {
  it('have the same keys in Chinese and English', () => {
    expect(keys(en).sort()).toEqual(keys(zh).sort())
  })

  it('have no empty strings', () => {
    const empty = (c: unknown) => keys(c).filter((k) => k.split('.').reduce((o: any, p) => o?.[p], c) === '')
    expect(empty(zh)).toEqual([])
    expect(empty(en)).toEqual([])
  })

  it('hold every literal key the pages use', () => {
    const known = new Set(keys(zh))
    const used = new Set<string>()
    for (const file of sources(join(__dirname, '../src'))) {
      for (const match of readFileSync(file, 'utf8').matchAll(/\bt\('([a-zA-Z0-9_.]+)'/g)) used.add(match[1])
    }
    expect(used.size).toBeGreaterThan(100)
    expect([...used].filter((k) => !known.has(k))).toEqual([])
  })

  it('name every menu entry', async () => {
    const { MENU } = await import('../src/utils/menu')
    const known = new Set(keys(zh))
    expect(MENU.filter((m) => !known.has(`menu.${m.name}`)).map((m) => m.name)).toEqual([])
  })
})
