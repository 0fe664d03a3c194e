// The shape every PriceStream dashboard must have, on top of @grafana/schema's Dashboard:
// every panel has a description, queries through a datasource variable (${prometheus} or
// ${postgres}), and its targets are PromQL or raw SQL queries. scripts/checks/
// grafana-dashboards.sh writes each dashboard JSON as `export const dashboard = <json>
// satisfies CheckedDashboard;` beside this file and runs `tsc --noEmit` over them.

import type {
  AnnotationQuery,
  Dashboard,
  DataQuery,
  DataSourceRef,
  Panel,
  RowPanel,
} from '@grafana/schema';

export type VariableRef =
  | { type: 'prometheus'; uid: '${prometheus}' }
  | { type: 'grafana-postgresql-datasource'; uid: '${postgres}' };

// Type literals, not interfaces, so they stay assignable to Panel's
// `Record<string, unknown>` targets; the common fields are DataQuery's.
type QueryBase = Pick<DataQuery, 'refId' | 'hide' | 'queryType' | 'key'> & { datasource: VariableRef };

export type PromQuery = QueryBase & {
  expr: string;
  legendFormat?: string;
  range?: boolean;
  instant?: boolean;
  editorMode?: 'code' | 'builder';
};

export type SqlQuery = QueryBase & {
  rawSql: string;
  format: 'table' | 'time_series';
  rawQuery: true;
  editorMode?: 'code' | 'builder';
};

export type Query = PromQuery | SqlQuery;

export type CheckedPanel = Omit<Panel, 'targets' | 'datasource' | 'description'> & {
  type: 'timeseries' | 'stat' | 'table' | 'candlestick';
  title: string;
  description: string;
  datasource: VariableRef;
  targets: Query[];
};

export type CheckedRow = Omit<RowPanel, 'panels'> & { panels: CheckedPanel[] };

export type CheckedAnnotation =
  | (AnnotationQuery & { builtIn: 1 })
  | (Omit<AnnotationQuery, 'target' | 'datasource'> & { datasource: VariableRef; target: Query });

export type CheckedDashboard = Omit<Dashboard, 'panels' | 'annotations'> & {
  uid: string;
  title: string;
  description: string;
  panels: Array<CheckedPanel | CheckedRow>;
  annotations: { list: CheckedAnnotation[] };
};

// A checked dashboard minus its annotations is a Dashboard as Grafana defines it.
export function asDashboard(d: CheckedDashboard): Dashboard {
  const { annotations: _annotations, ...rest } = d;
  const plain: Dashboard = rest;
  return plain;
}

export type { DataSourceRef };
