import type { EChartsOption } from "echarts";
import { BarChart, SankeyChart } from "echarts/charts";
import { GridComponent, TooltipComponent } from "echarts/components";
import * as echarts from "echarts/core";
import { SVGRenderer } from "echarts/renderers";
// The ES module build: the CommonJS one (lib/) reaches the bundle as a module object, not a component.
import ReactEChartsCore from "echarts-for-react/esm/core";

// Only what the pages draw (a smaller bundle). The SVG renderer keeps labels as text in the page:
// readable by screen readers, selectable, and checked by the browser test against the ledger.
echarts.use([SankeyChart, BarChart, GridComponent, TooltipComponent, SVGRenderer]);

export function Chart({
  option,
  height,
  label,
  testId,
}: {
  option: EChartsOption;
  height: number;
  label: string;
  testId?: string;
}) {
  return (
    <div className="chart" role="img" aria-label={label} data-testid={testId}>
      <ReactEChartsCore
        echarts={echarts}
        option={option}
        notMerge
        style={{ height, width: "100%" }}
        opts={{ renderer: "svg" }}
      />
    </div>
  );
}
